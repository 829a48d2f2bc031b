"""Option types shared by :mod:`kitex_grpc.client`, :mod:`kitex_grpc.server` and :mod:`kitex_grpc.callopt`."""

from __future__ import annotations

from kitex_grpc.options._base import Option, OptionRecord
from kitex_grpc.options.client import ClientOption, ClientOptions
from kitex_grpc.options.server import ServerOption, ServerOptions
from kitex_grpc.options.tls import TLSConfig

__all__ = [
    "ClientOption",
    "ClientOptions",
    "Option",
    "OptionRecord",
    "ServerOption",
    "ServerOptions",
    "TLSConfig",
]
