"""Which event loop a program runs on: :func:`run` is ``asyncio.run`` on uvloop when it is installed.

Every transport works on both loops. uvloop (``pip install 'kitex-grpc[uvloop]'``) does the socket
and scheduling work of each call in C instead of in asyncio's pure-Python selector loop; on the
TTHeader benchmark it cut our server's CPU per request by about a third and our client's by about
two fifths (bench/README.md has the figures and the command). It plays the part netpoll plays for
Go Kitex: the framework's code is the same, the I/O loop under it is faster.

::

    from kitex_grpc import eventloop

    eventloop.run(main())                    # uvloop if installed, else asyncio's own loop
    eventloop.run(main(), loop="asyncio")    # the standard library's loop, whatever is installed
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

__all__ = ["LoopName", "run", "uvloop_available"]

T = TypeVar("T")
LoopName = Literal["auto", "asyncio", "uvloop"]


def uvloop_available() -> bool:
    """Whether ``uvloop`` can be imported here."""
    return importlib.util.find_spec("uvloop") is not None


def run(main: Coroutine[Any, Any, T], *, loop: LoopName = "auto", debug: bool | None = None) -> T:
    """Run ``main`` to completion on a new event loop and close it, as :func:`asyncio.run` does.

    ``loop``: ``"auto"`` (uvloop when installed, else asyncio's), ``"uvloop"`` (an ``ImportError``
    that says how to install it when it is missing) or ``"asyncio"``.
    """
    if loop not in ("auto", "asyncio", "uvloop"):
        main.close()
        raise ValueError(f"loop must be 'auto', 'asyncio' or 'uvloop', not {loop!r}")
    if loop == "uvloop" or (loop == "auto" and uvloop_available()):
        try:
            import uvloop
        except ImportError as exc:
            main.close()
            raise ImportError(
                "loop='uvloop' needs uvloop: pip install 'kitex-grpc[uvloop]' (not available on Windows)"
            ) from exc
        with asyncio.Runner(loop_factory=uvloop.new_event_loop, debug=debug) as runner:
            return runner.run(main)
    return asyncio.run(main, debug=debug)
