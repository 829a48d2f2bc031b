"""What is benchmarked: implementations, scenarios and payload sizes.

An implementation is one registry entry naming an adapter (``module:factory``, imported only inside
the server and client processes) and, for a kitex-grpc transport, the baseline it is compared to.
A new transport plugs in with one :class:`Impl` entry (plus its adapter module for a new baseline).
"""

from __future__ import annotations

from dataclasses import dataclass

UNARY = "unary"
BIDI_PINGPONG = "bidi-pingpong"
BIDI_PIPELINED = "bidi-pipelined"
SCENARIOS: tuple[str, ...] = (UNARY, BIDI_PINGPONG, BIDI_PIPELINED)
UNARY_ONLY: frozenset[str] = frozenset({UNARY})
ALL_SCENARIOS: frozenset[str] = frozenset(SCENARIOS)
PAYLOADS: tuple[int, ...] = (64, 4096)

SCENARIO_INFO: dict[str, str] = {
    UNARY: "unary calls, N in flight from N tasks on one connection",
    BIDI_PINGPONG: "one bidi stream: send, recv, repeat",
    BIDI_PIPELINED: "one bidi stream: a sender and a receiver task, at most W messages in flight",
}
SCENARIO_UNIT: dict[str, str] = {UNARY: "calls/s", BIDI_PINGPONG: "msg/s", BIDI_PIPELINED: "msg/s"}

PROFILE_IMPL = "kitex-grpc"  # what --profile measures when no implementation is named


@dataclass(frozen=True)
class Goal:
    """An issue's speed goal: ``impl``'s rate over ``versus``'s in ``scenario`` (both payloads) is at
    least ``ratio``. The run reports each goal whose two implementations ran."""

    issue: int
    scenario: str
    impl: str
    versus: str
    ratio: float


GOALS: tuple[Goal, ...] = (
    Goal(2, UNARY, "kitex-grpc", "grpc-aio", 0.9),
    Goal(3, UNARY, "kitex-h2", "grpclib", 1.5),
    Goal(3, UNARY, "kitex-h2", "grpc-aio", 1.0),
    Goal(3, BIDI_PIPELINED, "kitex-h2", "grpclib", 1.5),
    Goal(4, UNARY, "kitex-ttheader", "thriftpy2", 3.0),  # our client and server, Kitex's default pool
    Goal(4, UNARY, "kitex-ttheader-mux", "thriftpy2", 3.0),  # the same over 2 multiplexed connections
    Goal(4, UNARY, "kitex-server-sync", "thriftpy2-threaded", 1.0),  # the same client, each server
)


@dataclass(frozen=True, kw_only=True)
class Impl:
    """One client+server pair. ``adapter`` is ``"module:factory"``; the factory gets ``arg``."""

    name: str
    adapter: str
    arg: str = ""
    baseline: str | None = None  # the impl this one is divided by in the ratio column
    scenarios: frozenset[str] = ALL_SCENARIOS
    description: str = ""
    reference: bool = False  # a measuring aid, not a product or a baseline: runs only when named

    @property
    def is_kitex(self) -> bool:
        return self.baseline is not None


# Order matters: each kitex transport is followed by its baseline, so the pair runs back to back.
IMPLS: tuple[Impl, ...] = (
    Impl(
        name="kitex-grpc",
        adapter="bench.impl_kitex:adapter",
        arg="GRPC",
        baseline="grpc-aio",
        description="kitex-grpc client -> kitex-grpc server over grpcio, full default chain",
    ),
    Impl(
        name="grpc-aio",
        adapter="bench.impl_grpc_aio:adapter",
        description="grpcio-tools stubs: grpc.aio client -> grpc.aio server",
    ),
    Impl(
        name="kitex-h2",
        adapter="bench.impl_kitex:adapter",
        arg="GRPC_H2",
        baseline="grpclib",
        description="kitex-grpc client -> kitex-grpc server over the pure-Python h2 transport",
    ),
    Impl(
        name="grpclib",
        adapter="bench.impl_grpclib:adapter",
        description="grpclib stubs: grpclib client -> grpclib server",
    ),
    Impl(
        name="kitex-ttheader",
        adapter="bench.impl_ttheader:adapter",
        arg="TTHEADER",
        baseline="thriftpy2",
        scenarios=UNARY_ONLY,
        description="kitex-grpc Thrift client -> server over TTHeader (idl/echo.thrift)",
    ),
    Impl(
        name="kitex-ttheader-mux",
        adapter="bench.impl_ttheader:adapter",
        arg="TTHEADER:mux=2",
        baseline="thriftpy2",
        scenarios=UNARY_ONLY,
        description="the same over 2 multiplexed connections (client.with_mux_connection(2))",
    ),
    Impl(
        name="thriftpy2",
        adapter="bench.impl_thriftpy2:adapter",
        scenarios=UNARY_ONLY,
        description="thriftpy2 asyncio client -> server, framed binary (idl/echo.thrift)",
    ),
    Impl(
        name="kitex-server-sync",
        adapter="bench.impl_ttheader:sync_adapter",
        arg="kitex",
        baseline="thriftpy2-threaded",
        scenarios=UNARY_ONLY,
        description="thriftpy2 sync client (64 threads) -> kitex-grpc server over Framed",
    ),
    Impl(
        name="thriftpy2-threaded",
        adapter="bench.impl_ttheader:sync_adapter",
        arg="thriftpy2",
        scenarios=UNARY_ONLY,
        description="thriftpy2 sync client (64 threads) -> thriftpy2 TThreadedServer, framed cybin",
    ),
    Impl(
        name="asyncio-floor",
        adapter="bench.impl_ttheader:sync_adapter",
        arg="floor",
        scenarios=UNARY_ONLY,
        description="the same client -> an asyncio server that does no work: the loop and system calls",
        reference=True,
    ),
    Impl(
        name="raw-socket",
        adapter="bench.impl_raw:adapter",
        description="asyncio streams moving length-prefixed bytes, nothing else: the floor (bench/large.py)",
        reference=True,
    ),
)
BY_NAME: dict[str, Impl] = {impl.name: impl for impl in IMPLS}


def get(name: str) -> Impl:
    impl = BY_NAME.get(name)
    if impl is None:
        raise SystemExit(f"unknown implementation {name!r}; choose one of {', '.join(BY_NAME)}")
    return impl
