"""Which modules the build compiles with mypyc, and which of them this process runs compiled.

The hot sans-IO and codec modules of the TTHeader path are compiled to C extensions with mypyc when
the package is built with a C compiler at hand (``setup.py``). The same source runs as plain Python
otherwise, or when the build is told ``KITEX_GRPC_PURE_PYTHON=1``; behaviour is the same, only the
CPU per call differs (see bench/README.md).

``setup.py`` reads :data:`COMPILED_MODULES` from this file by path, before any dependency is installed,
so this module imports nothing of kitex_grpc's and nothing outside the standard library.
"""

from __future__ import annotations

import importlib
import importlib.machinery
from types import ModuleType

__all__ = ["COMPILED_MODULES", "compiled_modules", "describe_build", "runs_compiled", "source_path"]

# Only modules whose classes nothing subclasses: an interpreted class cannot subclass a compiled one.
# A class that subclasses one of asyncio's (the server transport's connection) stays a regular Python
# class with compiled methods. Calls between these modules are direct C calls. A module-level name
# read on a hot path should be Final: compiled code reads a Final name from a C static, any other
# from the module's globals dict on every use.
COMPILED_MODULES: tuple[str, ...] = (
    "kitex_grpc.protocol.frames",
    "kitex_grpc.protocol.ttheader",
    "kitex_grpc.protocol.thrift_message",
    "kitex_grpc.transport.ttheader.wire",
    "kitex_grpc.transport.ttheader.pool",
    "kitex_grpc.transport.ttheader.client",
    "kitex_grpc.codec.thrift",
    "kitex_grpc.codec.thrift_walk",
    "kitex_grpc.codec.thrift_binary",
    "kitex_grpc.rpcinfo",
    "kitex_grpc.metainfo",
    "kitex_grpc.transport.epoll_io",
    "kitex_grpc.transport.ttheader.server",
    "kitex_grpc.transport.ttheader.server_conn",
    "kitex_grpc.transport.ttheader.scheduler",
    "kitex_grpc.transport.ttheader.serving",
    "kitex_grpc.server.middlewares",
    "kitex_grpc.transport.call_head",
    "kitex_grpc.server.dispatch",
    "kitex_grpc.protocol.ttstream",
    "kitex_grpc.protocol.ttstream_state",
    "kitex_grpc.transport.ttstream.queue",
)


def source_path(module: str) -> str:
    """The source file of ``module``, relative to the project root."""
    return module.replace(".", "/") + ".py"


def runs_compiled(module: ModuleType) -> bool:
    """Whether this process loaded ``module`` from a C extension."""
    return (getattr(module, "__file__", None) or "").endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def compiled_modules() -> list[str]:
    """The modules of :data:`COMPILED_MODULES` that this process loaded from a C extension."""
    return [name for name in COMPILED_MODULES if runs_compiled(importlib.import_module(name))]


def describe_build() -> str:
    """One line saying how this install runs: how many modules compiled, or plain Python and why."""
    compiled = compiled_modules()
    if len(compiled) == len(COMPILED_MODULES):
        return f"kitex-grpc: {len(compiled)} modules compiled with mypyc"
    if not compiled:
        return "kitex-grpc: plain Python (no compiled modules: built without mypyc or a C compiler)"
    return f"kitex-grpc: {len(compiled)} of {len(COMPILED_MODULES)} modules compiled: {compiled}"


if __name__ == "__main__":
    print(describe_build())
