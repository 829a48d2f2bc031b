"""Test-wide set-up: the build under test, and generated code (``make test`` generates it; this
covers bare pytest).

``KITEX_GRPC_PURE_PYTHON=1`` tests the plain-Python build in a tree that holds the compiled one:
kitex_grpc's modules are then loaded from their sources, whatever extension sits beside them.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
PURE_PYTHON = os.environ.get("KITEX_GRPC_PURE_PYTHON", "") not in ("", "0")


class _SourceOnlyFinder(importlib.abc.MetaPathFinder):
    """Finds kitex_grpc's modules as the path finder does, but takes the source over an extension."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] != "kitex_grpc":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            return spec
        assert spec.origin is not None
        source = Path(spec.origin).with_name(fullname.rpartition(".")[2] + ".py")
        return importlib.util.spec_from_file_location(fullname, source)


if PURE_PYTHON:
    assert "kitex_grpc" not in sys.modules, "kitex_grpc was imported before the test set-up"
    sys.meta_path.insert(0, _SourceOnlyFinder())

if not (ROOT / "gen" / "echo" / "v1" / "echo_kitex.py").exists():
    from kitex_grpc.codegen import generate

    generate([ROOT / "protos" / "echo" / "v1" / "echo.proto"], ROOT / "gen")

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _check_compiled_build() -> None:
    """Refuse to test stale C extensions, and in CI insist on the compiled build users get.

    An editable install leaves mypyc's extensions beside their sources (kitex_grpc/compiled.py), and
    Python imports an extension before the source: after an edit, tests would run the old code.
    """
    from kitex_grpc.compiled import COMPILED_MODULES, compiled_modules, source_path

    compiled = compiled_modules()
    if PURE_PYTHON:
        if compiled:
            raise SystemExit(f"tests: KITEX_GRPC_PURE_PYTHON is set, yet {compiled} run compiled")
        return
    sources = [ROOT / source_path(name) for name in COMPILED_MODULES]
    built = [path for source in sources for path in source.parent.glob(source.stem + ".*.so")]
    if built and max(s.stat().st_mtime for s in sources) > min(b.stat().st_mtime for b in built):
        raise SystemExit(
            "tests: kitex_grpc's compiled modules are older than their sources: rebuild them with "
            "`make compiled` (or `pip install -e .`), or delete them (`make clean-compiled`)"
        )
    if IN_CI and compiled != list(COMPILED_MODULES):
        raise SystemExit(f"CI: expected every module of {COMPILED_MODULES} compiled, got {compiled}")


_check_compiled_build()
