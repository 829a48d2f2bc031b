"""Caller identity over gRPC: the four headers Kitex's HTTP/2 meta handlers carry.

A Kitex client with ``transmeta.ClientHTTP2Handler`` sends, on every unary and streaming call
(``pkg/transmeta/http2.go``, keys in ``pkg/remote/transmeta/http_metakey.go``):

=======================  ==========================================================  ================
header                   value                                                       sent when empty
=======================  ==========================================================  ================
``source-service``       the client's own name (``with_client_basic_info``)           yes
``source-method``        the method being served when the call is made, else ``""``   yes
``destination-service``  the destination service name (``new_client``'s)              yes
``destination-method``   the method called                                            yes
=======================  ==========================================================  ================

Both of our gRPC client transports always send them (they are harmless to a server that ignores
them). A server reads ``source-service`` / ``source-method`` into ``ri.caller`` as Kitex's
``ServerHTTP2Handler`` does; it never reads ``destination-*`` (those are for meshes and proxies).
Over TTHeader the same identity travels as int keys 3, 20, 6 and 9 (``transport.ttheader``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kitex_grpc import rpcinfo

if TYPE_CHECKING:
    from kitex_grpc.rpcinfo import Metadata, RPCInfo

__all__ = [
    "DESTINATION_METHOD",
    "DESTINATION_SERVICE",
    "SOURCE_METHOD",
    "SOURCE_SERVICE",
    "caller_names",
    "identity_headers",
]

SOURCE_SERVICE = "source-service"
SOURCE_METHOD = "source-method"
DESTINATION_SERVICE = "destination-service"
DESTINATION_METHOD = "destination-method"


def identity_headers(ri: RPCInfo) -> list[tuple[str, str | bytes]]:
    """The four identity headers of an outgoing call (``source-method`` from the call being served)."""
    served = rpcinfo.current()
    return [
        (SOURCE_SERVICE, ri.caller.service_name),
        (SOURCE_METHOD, served.method.name if served is not None else ""),
        (DESTINATION_SERVICE, ri.callee.service_name),
        (DESTINATION_METHOD, ri.method.name),
    ]


def caller_names(metadata: Metadata) -> tuple[str, str]:
    """The caller's service and method from received ``source-*`` headers (first value wins; ``""``
    when absent), for ``ri.caller`` (:class:`~kitex_grpc.transport.call_head.CallHead`)."""
    service = method = None
    for key, value in metadata:
        if key == SOURCE_SERVICE:
            if service is None:
                service = value
        elif key == SOURCE_METHOD and method is None:
            method = value
    return ("" if service is None else _text(service), "" if method is None else _text(method))


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "replace")
