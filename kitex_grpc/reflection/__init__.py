"""gRPC server reflection (``grpc.reflection.v1`` and ``v1alpha``) for kitex-grpc servers.

``server.with_reflection()`` registers one ServerReflection service that answers both versions from
the registered services' protobuf descriptors, so ``grpcurl -plaintext host:port list`` works.
"""

from __future__ import annotations

from kitex_grpc.reflection.service import REFLECTION_SERVICE_INFO, ReflectionHook, ReflectionServer

__all__ = ["REFLECTION_SERVICE_INFO", "ReflectionHook", "ReflectionServer"]
