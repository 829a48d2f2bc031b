"""The circuit breaker: transition table, hypothesis properties, Kitex's failure rules, real servers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gen.echo.v1 import echo_kitex
from kitex_grpc import client
from kitex_grpc.errors import (
    ACLError,
    BizStatusError,
    GetConnectionError,
    InstanceCircuitBreakError,
    ProtocolError,
    RemoteOrNetworkError,
    RPCTimeoutError,
    ServiceCircuitBreakError,
    ServiceDiscoveryError,
)
from kitex_grpc.governance import Breaker, CBConfig, CBSuite, State
from kitex_grpc.governance.circuitbreak import (
    TRANSITIONS,
    Input,
    Outcome,
    instance_outcome,
    service_outcome,
)
from tests.discovery.helpers import free_port, instances
from tests.support import Req


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_trip_cool_probe_recover() -> None:
    clock = Clock()
    b = Breaker(CBConfig(err_rate=0.5, min_sample=10), clock)
    for _ in range(9):
        b.record(Outcome.FAILURE)
    assert b.state is State.CLOSED  # 9 samples < min_sample
    b.record(Outcome.FAILURE)
    assert b.state is State.OPEN and not b.allow()
    clock.now += 4.99
    assert not b.allow()
    clock.now += 0.01  # 5 s cooling
    assert b.allow() and b.state is State.HALF_OPEN
    assert not b.allow()  # one probe at a time
    clock.now += 0.2  # a silent probe lets another through after the detect timeout
    assert b.allow()
    b.record(Outcome.SUCCESS)
    assert b.state is State.HALF_OPEN and b.allow()
    b.record(Outcome.SUCCESS)
    assert b.state is State.CLOSED
    assert [(f.name, i.name, t.name) for f, i, t in b.transitions] == [
        ("CLOSED", "TRIP", "OPEN"),
        ("OPEN", "COOLED", "HALF_OPEN"),
        ("HALF_OPEN", "RECOVER", "CLOSED"),
    ]


def test_probe_failure_reopens_and_window_forgets_old_samples() -> None:
    clock = Clock()
    b = Breaker(CBConfig(err_rate=0.5, min_sample=4), clock)
    for _ in range(4):
        b.record(Outcome.TIMEOUT)
    clock.now += 5
    assert b.allow()
    b.record(Outcome.FAILURE)
    assert b.state is State.OPEN
    b2 = Breaker(CBConfig(err_rate=0.5, min_sample=4), clock)
    for _ in range(3):
        b2.record(Outcome.FAILURE)
    clock.now += 10.5  # outside the 10 s window
    b2.record(Outcome.FAILURE)
    assert b2.state is State.CLOSED and b2.counts() == (0, 1, 0)


def test_unknown_transition_is_a_protocol_error() -> None:
    b = Breaker()
    with pytest.raises(ProtocolError):
        b._move(Input.RECOVER)  # CLOSED has no RECOVER


def test_kitex_failure_rules() -> None:
    assert service_outcome(None) is Outcome.SUCCESS
    assert service_outcome(BizStatusError(1, "biz")) is Outcome.SUCCESS
    for ignored in (ServiceDiscoveryError(), ACLError()):
        assert service_outcome(ignored) is Outcome.IGNORE
    assert service_outcome(RPCTimeoutError()) is Outcome.TIMEOUT
    assert service_outcome(RemoteOrNetworkError()) is Outcome.FAILURE
    assert instance_outcome(GetConnectionError()) is Outcome.FAILURE
    assert instance_outcome(RemoteOrNetworkError()) is Outcome.SUCCESS


ops = st.lists(
    st.tuples(st.sampled_from(["allow", "success", "failure", "timeout", "ignore"]), st.floats(0, 3)),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(1, 20), st.sampled_from([0.1, 0.5, 1.0]))
def test_properties_over_any_sequence(
    sequence: list[tuple[str, float]], min_sample: int, rate: float
) -> None:
    clock = Clock()
    b = Breaker(CBConfig(err_rate=rate, min_sample=min_sample), clock)
    for op, advance in sequence:
        clock.now += advance
        before = b.state
        if op == "allow":
            allowed = b.allow()
            if before is State.CLOSED:
                assert allowed  # a closed breaker never rejects
            if b.state is State.OPEN:
                assert not allowed and clock.now - b._opened_at < b.cooling
        else:
            b.record(Outcome[op.upper()])
        # every state change is an entry of the transition table
        for frm, inp, to in b.transitions:
            assert TRANSITIONS[(frm, inp)] is to
        s, f, t = b.counts()
        assert s >= 0 and f >= 0 and t >= 0
        tripping = op in ("failure", "timeout")
        if tripping and before is State.CLOSED and b.state is State.CLOSED and s + f + t >= min_sample:
            # the trip is decided when a failure or timeout is recorded (as in Kitex): a breaker still
            # closed right after one is under the rate; successes and ignored outcomes never trip it,
            # even when the window has slid past older successes
            assert (f + t) / (s + f + t) < rate


async def test_instance_breaker_opens_on_dead_instance_then_recovers() -> None:
    clock = Clock()
    dead = f"127.0.0.1:{free_port()}"
    suite = CBSuite(instance_config=CBConfig(err_rate=0.5, min_sample=3), clock=clock)
    async with instances(1) as started:
        live = started[0][0].address
        cli = echo_kitex.new_client(
            "echo", client.with_host_ports(dead, live), client.with_circuit_breaker(suite)
        )
        async with cli:
            assert cli.client.chain_names[:2] == ("service_circuit_breaker", "rpc_timeout")
            for _ in range(12):
                await cli.Unary(Req())  # connect failures on `dead` re-pick to `live`: nothing fails
            assert suite.instance_breaker(dead).state is State.OPEN
            assert suite.instance_breaker(live).state is State.CLOSED
            with pytest.raises(InstanceCircuitBreakError):
                from kitex_grpc import callopt

                await cli.Unary(Req(), callopt.with_host_port(dead))


async def test_service_breaker_opens_and_recovers() -> None:
    clock = Clock()
    suite = CBSuite(service_config=CBConfig(err_rate=0.5, min_sample=5), clock=clock)
    async with instances(1) as started:
        cli = echo_kitex.new_client(
            "echo", client.with_host_ports(started[0][0].address), client.with_circuit_breaker(suite)
        )
        async with cli:
            for _ in range(5):
                with pytest.raises(Exception) as info:
                    await cli.Unary(Req(message="error:boom"))
                assert not isinstance(info.value, ServiceCircuitBreakError)
            for _ in range(3):  # open: rejected without reaching the server
                with pytest.raises(ServiceCircuitBreakError):
                    await cli.Unary(Req(message="ok"))
            assert started[0][1].calls == 5
            clock.now += 5.0  # cooling over: half-open probes succeed twice and close it
            await cli.Unary(Req(message="ok"))
            await cli.Unary(Req(message="ok"))
            key = "/echo/Unary"
            assert suite.service_breaker(key).state is State.CLOSED
            for _ in range(5):
                await cli.Unary(Req(message="ok"))
            # biz status errors are successes for the breaker
            for _ in range(10):
                with pytest.raises(BizStatusError):
                    await cli.Unary(Req(message="biz:1:x"))
            assert suite.service_breaker(key).state is State.CLOSED
