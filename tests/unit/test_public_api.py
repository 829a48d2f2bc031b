"""The public surface is a contract: this list changes only on purpose."""

from __future__ import annotations

import kitex_grpc
from kitex_grpc import callopt, client, grpc_meta, metainfo, server

EXPECTED = [
    "BizStatusError", "Client", "Endpoint", "KitexError", "MethodInfo", "Middleware", "PayloadCodec",
    "RPCInfo", "RPCTimeoutError", "Server", "ServiceInfo", "StatusCode", "StatusError", "StreamingMode",
    "TransportProtocol", "__version__", "callopt", "client", "errors", "grpc_meta", "metainfo", "new_client",
    "new_server", "protobuf", "rpcinfo", "server",
]  # fmt: skip


def test_top_level_exports_are_locked_and_sorted() -> None:
    assert kitex_grpc.__all__ == EXPECTED
    assert sorted(kitex_grpc.__all__) == kitex_grpc.__all__
    for name in EXPECTED:
        assert hasattr(kitex_grpc, name), name


def test_submodule_exports_resolve() -> None:
    for module in (client, server, callopt, metainfo, grpc_meta):
        assert sorted(module.__all__) == module.__all__
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
