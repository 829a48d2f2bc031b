"""kitex-grpc gen: real protoc runs, and the generated modules import and type-check."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kitex_grpc.cli import main
from kitex_grpc.codegen import infer_proto_root

ROOT = Path(__file__).resolve().parents[2]
MYPY = [sys.executable, "-m", "mypy", "--strict"]

PROTO = """
syntax = "proto3";
package acme.shop.v2;
import "google/protobuf/empty.proto";
message Item { message Price { int64 cents = 1; } string sku = 1; Price price = 2; }
service Catalog {
  rpc Get(Item) returns (Item.Price);
  rpc List(google.protobuf.Empty) returns (stream Item);
}
service Cart {
  rpc Fill(stream Item) returns (google.protobuf.Empty);
  rpc Chat(stream Item) returns (stream Item);
}
"""


@pytest.fixture
def generated(tmp_path: Path) -> Path:
    src = tmp_path / "protos" / "acme" / "shop" / "v2"
    src.mkdir(parents=True)
    (src / "shop.proto").write_text(PROTO)
    out = tmp_path / "out"
    assert main(["gen", str(src / "shop.proto"), "-o", str(out)]) == 0
    return out


def test_package_root_is_inferred_from_the_package(tmp_path: Path) -> None:
    d = tmp_path / "a" / "echo" / "v1"
    d.mkdir(parents=True)
    (d / "x.proto").write_text('syntax = "proto3";\npackage echo.v1;\n')
    assert infer_proto_root(d / "x.proto") == tmp_path / "a"
    (d / "y.proto").write_text('syntax = "proto3";\npackage other;\n')
    assert infer_proto_root(d / "y.proto") == d


def test_generated_module_has_every_service(generated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(generated))
    mod = importlib.import_module("acme.shop.v2.shop_kitex")
    try:
        info = mod.CATALOG_SERVICE_INFO
        assert info.full_name == "acme.shop.v2.Catalog"
        assert [(m.name, m.mode.name) for m in info.methods.values()] == [
            ("Get", "UNARY"),
            ("List", "SERVER"),
        ]
        assert info.methods["Get"].response_type.DESCRIPTOR.full_name == "acme.shop.v2.Item.Price"
        cart = mod.CART_SERVICE_INFO
        assert [m.mode.name for m in cart.methods.values()] == ["CLIENT", "BIDIRECTIONAL"]
        for name in ("CatalogHandler", "CatalogClient", "new_catalog_client", "new_cart_server"):
            assert hasattr(mod, name)
        assert not hasattr(mod, "new_client")  # two services: only the qualified names
    finally:
        for name in [n for n in sys.modules if n.startswith("acme")]:
            del sys.modules[name]


def test_generated_code_passes_mypy_strict(generated: Path) -> None:
    result = subprocess.run(
        # the project's config: kitex_grpc is read from source here, so its settings for untyped
        # third-party modules (grpc_tools, h2, ...) apply, as they do for an installed package
        [*MYPY, "--config-file", str(ROOT / "pyproject.toml"), "--no-incremental", "-p", "acme"],
        cwd=generated,
        capture_output=True,
        text=True,
        env={**os.environ, "MYPYPATH": os.pathsep.join([str(generated), str(ROOT)])},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_file_and_protoc_failure_are_clear(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gen", str(tmp_path / "nope.proto"), "-o", str(tmp_path / "o")]) == 1
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.proto"
    bad.write_text('syntax = "proto3"; message {')
    assert main(["gen", str(bad), "-o", str(tmp_path / "o")]) == 1
    assert "protoc failed" in capsys.readouterr().err
