"""Plain grpcio stubs generated at test time (grpcio-tools) from the repo's own health/reflection protos.

The protos are copied under module names of their own (``kxstub_*``) so the generated code cannot be
confused with the ``grpc`` package; their packages, and so the RPC paths, are unchanged.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {
    "kxstub_health/health.proto": ROOT / "protos/grpc/health/v1/health.proto",
    "kxstub_refl_v1/reflection.proto": ROOT / "protos/grpc/reflection/v1/reflection.proto",
    "kxstub_refl_v1alpha/reflection.proto": ROOT / "protos/grpc/reflection/v1alpha/reflection.proto",
}


@pytest.fixture(scope="session")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("grpc_stubs")
    for rel, src in SOURCES.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, out / rel)
    args = ["protoc", f"-I{out}", f"--python_out={out}", f"--grpc_python_out={out}", *SOURCES]
    assert protoc.main(args) == 0
    sys.path.insert(0, str(out))
    try:
        mods = {
            name: importlib.import_module(name)
            for name in (
                "kxstub_health.health_pb2",
                "kxstub_health.health_pb2_grpc",
                "kxstub_refl_v1.reflection_pb2",
                "kxstub_refl_v1.reflection_pb2_grpc",
                "kxstub_refl_v1alpha.reflection_pb2",
                "kxstub_refl_v1alpha.reflection_pb2_grpc",
            )
        }
    finally:
        sys.path.remove(str(out))
    return SimpleNamespace(
        health_pb2=mods["kxstub_health.health_pb2"],
        health_grpc=mods["kxstub_health.health_pb2_grpc"],
        refl_pb2=mods["kxstub_refl_v1.reflection_pb2"],
        refl_grpc=mods["kxstub_refl_v1.reflection_pb2_grpc"],
        refl_alpha_pb2=mods["kxstub_refl_v1alpha.reflection_pb2"],
        refl_alpha_grpc=mods["kxstub_refl_v1alpha.reflection_pb2_grpc"],
    )
