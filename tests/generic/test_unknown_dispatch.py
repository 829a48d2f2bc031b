"""The unknown-service handler's entries in the dispatcher: made on demand, and bounded."""

from __future__ import annotations

import kitex_grpc
from kitex_grpc import server
from kitex_grpc.generic import register_unknown_handler
from kitex_grpc.generic.server import UNKNOWN_CACHE_SIZE, UNKNOWN_SERVICE
from kitex_grpc.serviceinfo import PayloadCodec, StreamingMode


class Nothing:
    async def call(self, service: str, method: str, request: bytes) -> bytes:
        return b""


def test_entries_are_made_on_demand_and_kept_in_a_bounded_lru() -> None:
    svr = kitex_grpc.new_server(server.with_service_addr("127.0.0.1:0"))
    dispatcher = svr.dispatcher
    assert dispatcher.lookup("Any", "m") is None  # nothing registered, no handler
    register_unknown_handler(svr, Nothing(), payload_codec=PayloadCodec.PROTOBUF)
    first = dispatcher.lookup("Any", "m")
    assert first is not None and dispatcher.lookup("Any", "m") is first
    assert (first.service.service_name, first.method.name) == ("Any", "m")
    assert first.service.payload_codec is PayloadCodec.PROTOBUF
    assert first.method.mode is StreamingMode.BIDIRECTIONAL
    service = dispatcher.search_service("", "m")  # a TTHeader request without isn
    assert service is not None and service.service_name == UNKNOWN_SERVICE
    for i in range(UNKNOWN_CACHE_SIZE):  # a flood of new names pushes the oldest out
        dispatcher.lookup("Flood", f"m{i}")
    assert dispatcher.lookup("Flood", f"m{UNKNOWN_CACHE_SIZE - 1}") is dispatcher.lookup(
        "Flood", f"m{UNKNOWN_CACHE_SIZE - 1}"
    )
    assert dispatcher.lookup("Any", "m") is not first  # evicted, made again
    assert dispatcher.methods == {}  # nothing was registered for good
