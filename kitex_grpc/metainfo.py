"""metainfo: transient, persistent and backward values that ride alongside a call.

Semantics follow ``bytedance/gopkg cloud/metainfo`` as Kitex uses it (KITEX-WIRE.md §1.5 and §3):

- **transient** values set in this hop go to the next hop only. Values received from upstream are
  "stale" transient values: readable here with :func:`get_value`, but not forwarded over TTHeader.
  Over gRPC Kitex's legacy mode forwards them too (``ToHTTPHeader`` sends every value).
- **persistent** values travel every hop.
- **backward** values go from a server back to its direct caller; the caller opts in with
  :func:`with_backward_values`.

Values live in :mod:`contextvars`, so each asyncio task sees its own. The ``with_*`` helpers are
context managers that restore the previous state on exit::

    with metainfo.with_value("temp", "t1"), metainfo.with_persistent_value("log_id", "42"):
        await cli.Unary(req)

Wire forms: TTHeader string keys ``RPC_TRANSIT_<k>`` / ``RPC_PERSIST_<k>`` (case kept); gRPC headers
``rpc-transit-<k>`` / ``rpc-persist-<k>`` with ``k`` lower-cased and ``_`` turned into ``-`` on send,
and upper-cased with ``-`` turned into ``_`` on receipt (``metainfo/http.go``), so ``temp`` arrives
as ``TEMP``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from types import MappingProxyType
from typing import Final

__all__ = [
    "BackwardValues",
    "del_persistent_value",
    "del_value",
    "get_all_persistent_values",
    "get_all_values",
    "get_persistent_value",
    "get_value",
    "recv_all_backward_values",
    "recv_backward_value",
    "send_backward_value",
    "with_backward_values",
    "with_persistent_value",
    "with_value",
]

PREFIX_TRANSIENT = "RPC_TRANSIT_"
PREFIX_TRANSIENT_UPSTREAM = "RPC_TRANSIT_UPSTREAM_"
PREFIX_PERSISTENT = "RPC_PERSIST_"
HTTP_PREFIX_TRANSIENT = "rpc-transit-"
HTTP_PREFIX_PERSISTENT = "rpc-persist-"

_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})

# Each variable holds an immutable mapping; changes replace it, so a copied context never sees
# another task's writes.
_transient: Final[contextvars.ContextVar[Mapping[str, str]]] = contextvars.ContextVar(
    "mi_transient", default=_EMPTY
)
_stale: Final[contextvars.ContextVar[Mapping[str, str]]] = contextvars.ContextVar("mi_stale", default=_EMPTY)
_persistent: Final[contextvars.ContextVar[Mapping[str, str]]] = contextvars.ContextVar(
    "mi_persistent", default=_EMPTY
)


class BackwardValues:
    """Backward values: a server fills ``sent``; a client collects ``received`` from its callee."""

    __slots__ = ("received", "sent")

    def __init__(self) -> None:
        self.sent: dict[str, str] = {}
        self.received: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.received.get(key)


_backward_recv: Final[contextvars.ContextVar[BackwardValues | None]] = contextvars.ContextVar(
    "mi_bw_recv", default=None
)
_backward_send: Final[contextvars.ContextVar[BackwardValues | None]] = contextvars.ContextVar(
    "mi_bw_send", default=None
)


def _check(key: str, value: str) -> None:
    if not key or not isinstance(key, str):
        raise ValueError(f"metainfo key must be a non-empty string, got {key!r}")
    if not isinstance(value, str):
        raise TypeError(f"metainfo value for {key!r} must be str, got {type(value).__name__}")


@contextmanager
def _scoped(var: contextvars.ContextVar[Mapping[str, str]], key: str, value: str | None) -> Iterator[None]:
    current = dict(var.get())
    if value is None:
        current.pop(key, None)
    else:
        current[key] = value
    token = var.set(MappingProxyType(current))
    try:
        yield
    finally:
        var.reset(token)


def with_value(key: str, value: str) -> AbstractContextManager[None]:
    """Set a transient value for outgoing calls made inside the ``with`` block."""
    _check(key, value)
    return _scoped(_transient, key, value)


def with_persistent_value(key: str, value: str) -> AbstractContextManager[None]:
    """Set a persistent value (it travels every hop) inside the ``with`` block."""
    _check(key, value)
    return _scoped(_persistent, key, value)


def del_value(key: str) -> AbstractContextManager[None]:
    """Hide a transient value (set here or received) inside the ``with`` block."""
    return _combined_delete(key)


@contextmanager
def _combined_delete(key: str) -> Iterator[None]:
    with _scoped(_transient, key, None), _scoped(_stale, key, None):
        yield


def del_persistent_value(key: str) -> AbstractContextManager[None]:
    """Stop a persistent value from travelling further inside the ``with`` block."""
    return _scoped(_persistent, key, None)


def get_value(key: str) -> str | None:
    """A transient value set in this hop, or else received from upstream."""
    value = _transient.get().get(key)
    if value is None:
        value = _stale.get().get(key)
    return value


def get_all_values() -> dict[str, str]:
    """All transient values visible here: received ones overlaid by those set in this hop."""
    stale, transient = _stale.get(), _transient.get()
    if not stale:
        return dict(transient)
    merged = dict(stale)
    merged.update(transient)
    return merged


def get_persistent_value(key: str) -> str | None:
    return _persistent.get().get(key)


def get_all_persistent_values() -> dict[str, str]:
    return dict(_persistent.get())


# -- backward ---------------------------------------------------------------------------------------


@contextmanager
def with_backward_values() -> Iterator[BackwardValues]:
    """Collect the backward values of calls made inside the block (a client opts in with this)."""
    holder = BackwardValues()
    token = _backward_recv.set(holder)
    try:
        yield holder
    finally:
        _backward_recv.reset(token)


def send_backward_value(key: str, value: str) -> bool:
    """From a handler: send ``key=value`` back to the caller. False outside a served call."""
    _check(key, value)
    holder = _backward_send.get()
    if holder is None:
        return False
    holder.sent[key] = value
    return True


def recv_backward_value(key: str) -> str | None:
    holder = _backward_recv.get()
    return None if holder is None else holder.received.get(key)


def recv_all_backward_values() -> dict[str, str]:
    holder = _backward_recv.get()
    return {} if holder is None else dict(holder.received)


# -- transport side (used by transports and the server; not part of the user API) -------------------


def begin_server_call(transient: Mapping[str, str], persistent: Mapping[str, str]) -> BackwardValues:
    """Install what a server received for the current task, and start collecting backward values.

    Received transient values become stale (Kitex calls ``TransferForward`` after reading), and
    nothing set upstream of this hop remains "current".
    """
    if _transient.get():
        _transient.set(_EMPTY)
    if transient or _stale.get():
        _stale.set(MappingProxyType(dict(transient)) if transient else _EMPTY)
    if persistent or _persistent.get():
        _persistent.set(MappingProxyType(dict(persistent)) if persistent else _EMPTY)
    holder = BackwardValues()
    _backward_send.set(holder)
    return holder


def backward_receiver() -> BackwardValues | None:
    """The holder a client call should fill with backward values, if the caller opted in."""
    return _backward_recv.get()


def cgi_to_http(key: str) -> str:
    return key.replace("_", "-").lower()


def http_to_cgi(key: str) -> str:
    return key.replace("-", "_").upper()


def to_http2_headers() -> list[tuple[str, str]]:
    """Outgoing gRPC metadata for the current context (Kitex legacy mode: every transient value)."""
    stale, transient, persistent = _stale.get(), _transient.get(), _persistent.get()
    if not (stale or transient or persistent):
        return []
    headers = [(HTTP_PREFIX_TRANSIENT + cgi_to_http(k), v) for k, v in get_all_values().items()]
    headers.extend((HTTP_PREFIX_PERSISTENT + cgi_to_http(k), v) for k, v in persistent.items())
    return headers


def from_http2_headers(
    metadata: Iterable[tuple[str, str | bytes]],
) -> tuple[dict[str, str], dict[str, str]]:
    """Split received gRPC metadata into (transient, persistent) maps with CGI-style keys."""
    transient: dict[str, str] = {}
    persistent: dict[str, str] = {}
    for key, value in metadata:
        if not isinstance(value, str) or not value or not key.startswith("rpc-"):
            continue
        lower = key.lower()
        if lower.startswith(HTTP_PREFIX_TRANSIENT) and len(lower) > len(HTTP_PREFIX_TRANSIENT):
            transient[http_to_cgi(lower[len(HTTP_PREFIX_TRANSIENT) :])] = value
        elif lower.startswith(HTTP_PREFIX_PERSISTENT) and len(lower) > len(HTTP_PREFIX_PERSISTENT):
            persistent[http_to_cgi(lower[len(HTTP_PREFIX_PERSISTENT) :])] = value
    return transient, persistent


def to_ttheader_strinfo() -> dict[str, str]:
    """Outgoing TTHeader string keys: only this hop's transient values (``TransferForward`` first)."""
    transient, persistent = _transient.get(), _persistent.get()
    if not transient and not persistent:
        return {}
    info = {PREFIX_TRANSIENT + k: v for k, v in transient.items()}
    info.update((PREFIX_PERSISTENT + k, v) for k, v in persistent.items())
    return info


def from_ttheader_strinfo(info: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Split received TTHeader string keys into (transient, persistent), case preserved."""
    transient: dict[str, str] = {}
    persistent: dict[str, str] = {}
    for key, value in info.items():
        if not key.startswith("RPC_"):
            continue
        if key.startswith(PREFIX_TRANSIENT_UPSTREAM):
            transient[key[len(PREFIX_TRANSIENT_UPSTREAM) :]] = value
        elif key.startswith(PREFIX_TRANSIENT):
            transient.setdefault(key[len(PREFIX_TRANSIENT) :], value)
        elif key.startswith(PREFIX_PERSISTENT):
            persistent[key[len(PREFIX_PERSISTENT) :]] = value
    return transient, persistent
