"""The narrow interface every implementation adapter provides, and the loader for registry entries.

An adapter starts a server and connects a client. Load generators only ever see :class:`BenchClient`,
so kitex-grpc and each baseline run exactly the same measuring code.
"""

from __future__ import annotations

import importlib
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from bench.registry import Impl


class UnavailableError(Exception):
    """The implementation cannot run in this build (missing transport, package or generated code)."""


class BenchServer(Protocol):
    @property
    def address(self) -> str: ...

    async def stop(self) -> None: ...


class BidiStream(Protocol):
    async def send(self, message: Any) -> None: ...

    async def recv(self) -> Any | None:
        """The next message, or ``None`` once the server has finished."""
        ...

    async def close_send(self) -> None: ...


class BenchClient(Protocol):
    def request(self, payload: bytes) -> Any: ...

    async def unary(self, request: Any) -> Any: ...

    def bidi(self) -> AbstractAsyncContextManager[BidiStream]: ...

    async def close(self) -> None: ...


class Adapter(Protocol):
    async def start_server(self, host: str) -> BenchServer:
        """Listen on ``host`` at a free port; raise :class:`UnavailableError` if this build cannot."""
        ...

    async def connect(self, address: str) -> BenchClient:
        """A client of the server at ``address``; raise :class:`UnavailableError` if this build cannot."""
        ...


def load(impl: Impl) -> Adapter:
    """Import the impl's adapter module and build it; a missing module or package is UnavailableError."""
    module_name, _, factory_name = impl.adapter.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnavailableError(f"cannot import {module_name}: {exc}") from exc
    factory = getattr(module, factory_name)
    adapter: Adapter = factory(impl.arg)
    return adapter


def reply_fields(request: Any) -> dict[str, Any]:
    """What every echo server sends back: the request's fields, unchanged."""
    return {"message": request.message, "payload": request.payload, "seq": request.seq}
