"""``kitex-grpc serve module:factory``: run a server, in worker processes, until SIGTERM or SIGINT.

``factory`` is a callable in ``module`` that takes no argument and returns a configured
:class:`~kitex_grpc.server.Server`, not started: services registered, options set (address,
transport, limits, registry, metrics endpoint, ...). It runs once in the supervisor (which reads
the options and binds the address) and once in each worker (which serves); so it must build the
same server each time and should not start anything itself. An ``async def`` factory is awaited.

Exit codes: 0 after a clean drain; 1 when serving failed (the factory raised, the address cannot be
used, a worker did not start); 2 bad usage (a worker count below 1, a spec that is not
``module:factory``, a factory that does not return a server).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import sys
import traceback
from typing import Any

from kitex_grpc.cli import EXIT_OK, EXIT_RPC, EXIT_USAGE

EXIT_SERVE = EXIT_RPC  # 1: serving failed


class _UsageError(Exception):
    pass


def add_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run a server from a factory, in worker processes (SIGHUP rolls them, SIGTERM drains)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("factory", metavar="module:factory", help="e.g. examples.workers.app:make_server")
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes (default: the factory's with_workers, else the usable cores)",
    )
    serve.add_argument("--divide-limits", action="store_true", help="limits are totals, divided by N")
    serve.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop of every process (default: uvloop when installed)",
    )


def _load(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise _UsageError(f"expected 'module:factory', got {spec!r}")
    if os.getcwd() not in sys.path:  # as `python -m`: modules of the current directory import
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _UsageError(f"cannot import {module_name!r}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise _UsageError(f"{module_name!r} has no callable {attr!r}")
    return factory


async def _serve(args: argparse.Namespace) -> int:
    from kitex_grpc.options.server import WorkersOption, usable_cores
    from kitex_grpc.server import Server
    from kitex_grpc.server.workers import WorkerPool, WorkersError, run_workers

    try:
        factory = _load(args.factory)
    except _UsageError as exc:
        print(f"kitex-grpc serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        server = factory()
        if inspect.isawaitable(server):
            server = await server
    except Exception as exc:
        traceback.print_exc()
        print(
            f"kitex-grpc serve: the factory {args.factory} raised {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return EXIT_SERVE
    if not isinstance(server, Server):
        print(
            f"kitex-grpc serve: {args.factory} returned {server!r}, not a kitex_grpc Server", file=sys.stderr
        )
        return EXIT_USAGE
    option = server.options.workers or WorkersOption(usable_cores())
    changes: dict[str, Any] = {}
    if args.workers is not None:
        changes["count"] = args.workers
    if args.divide_limits:
        changes["divide_limits"] = True
    if changes:
        import dataclasses

        option = dataclasses.replace(option, **changes)
    server.reconfigure(workers=option)

    def ready(pool: WorkerPool) -> None:
        metrics = f" metrics={pool.hub.address}" if pool.hub is not None else ""
        pids = ",".join(map(str, pool.pids))
        print(
            f"serving {pool.address} transport={server.options.transport_protocol.name} pids={pids}{metrics}",
            flush=True,
        )

    try:
        await run_workers(server, ready)
    except WorkersError as exc:
        print(f"kitex-grpc serve: {exc}", file=sys.stderr)
        return EXIT_SERVE
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        print(
            f"kitex-grpc serve: --workers: expected a worker count >= 1, got {args.workers}", file=sys.stderr
        )
        return EXIT_USAGE
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s [%(process)d] %(message)s")
    from kitex_grpc import eventloop

    return eventloop.run(_serve(args), loop=args.loop)
