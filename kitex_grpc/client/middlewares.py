"""The client's built-in middlewares (Kitex ``client/middlewares.go``); defined in
:mod:`kitex_grpc.transport.call_middlewares`, which lower layers can import."""

from __future__ import annotations

from kitex_grpc.transport.call_middlewares import error_mapping_middleware, rpc_timeout_middleware

__all__ = ["error_mapping_middleware", "rpc_timeout_middleware"]
