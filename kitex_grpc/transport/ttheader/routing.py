"""Which registered method a request is for (Kitex ``server/service.go SearchService``).

The dispatcher's ``search_service`` finds the service by the TTHeader str key ``isn`` (the IDL
service name), else by the method (Framed, Buffered and generic clients send no ``isn``). No
service: TApplicationException 20 "unknown service <isn>, method <m>"; a service without the method:
1 "unknown method <m> (service <isn>)" (``pkg/remote/codec/util.go``). The request's payload codec
must match the service's (Thrift vs Kitex Protobuf).
"""

from __future__ import annotations

from collections.abc import Mapping

from kitex_grpc.codec.kitex_protobuf import envelope_for
from kitex_grpc.errors import TApplicationType
from kitex_grpc.header_keys import IDL_SERVICE_KEY
from kitex_grpc.transport.base import CallDispatcher, MethodEntry
from kitex_grpc.transport.ttheader.wire import Message

__all__ = ["ISN_KEY", "RouteError", "route"]

ISN_KEY = IDL_SERVICE_KEY  # the name this module has always exported


class RouteError(Exception):
    """A request no registered method serves; ``type_id`` is the TApplicationException type."""

    def __init__(self, detail: str, type_id: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.type_id = type_id


def route(dispatcher: CallDispatcher, message: Message, str_info: Mapping[str, str]) -> MethodEntry:
    """The method entry for ``message``, or :class:`RouteError`."""
    isn = str_info.get(ISN_KEY, "")
    method = message.method
    service = dispatcher.search_service(isn, method)
    if service is None:
        raise RouteError(f"unknown service {isn}, method {method}", TApplicationType.UNKNOWN_SERVICE)
    entry = dispatcher.lookup(service.service_name, method)
    if entry is None:
        raise RouteError(f"unknown method {method} (service {isn})", TApplicationType.UNKNOWN_METHOD)
    if envelope_for(entry.service) is not message.envelope:
        raise RouteError(
            f"{message.envelope.name} payload for the {entry.service.payload_codec.value} service "
            f"{entry.service.service_name}",
            TApplicationType.PROTOCOL_ERROR,
        )
    return entry
