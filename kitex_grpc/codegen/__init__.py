"""Code generation from .proto files (``kitex-grpc gen``)."""

from __future__ import annotations

from kitex_grpc.codegen.generator import CodegenError, GeneratedFile, generate, infer_proto_root

__all__ = ["CodegenError", "GeneratedFile", "generate", "infer_proto_root"]
