"""The same server from Python: ``with_workers`` and ``run()``.

::

    python examples/workers/server.py --addr 127.0.0.1:8888 --workers 2

``run()`` supervises: it starts this program again once per worker (the environment tells each copy
it is a worker, and its own ``run()`` serves), restarts a worker that dies, rolls them on SIGHUP and
drains them all on SIGTERM or Ctrl-C. Everything up to ``run()`` runs in every copy, so build the
server the same way each time.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: gen/, examples/

from examples.workers.app import PidEcho
from gen.echo.v1 import echo_kitex
from kitex_grpc import eventloop, server


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", default="127.0.0.1:8888")
    parser.add_argument("--transport", default="ttheader")
    parser.add_argument("--workers", type=int, default=None, help="default: the usable cores")
    args = parser.parse_args()
    svr = echo_kitex.new_server(
        PidEcho(),
        server.with_service_addr(args.addr),
        server.with_transport_protocol(args.transport),
        server.with_workers(args.workers),
        server.with_exit_wait_time(5),
    )
    await svr.run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s [%(process)d] %(message)s")
    eventloop.run(main())
