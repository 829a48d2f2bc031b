"""Test-wide set-up: generated code must exist (``make test`` generates it; this covers bare pytest)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

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

    sources = [ROOT / source_path(name) for name in COMPILED_MODULES]
    built = [path for source in sources for path in source.parent.glob(source.stem + ".*.so")]
    if built and max(s.stat().st_mtime for s in sources) > min(b.stat().st_mtime for b in built):
        raise SystemExit(
            "tests: kitex_grpc's compiled modules are older than their sources: rebuild them with "
            "`make compiled` (or `pip install -e .`), or delete them (`make clean-compiled`)"
        )
    if IN_CI and compiled_modules() != list(COMPILED_MODULES):
        compiled = compiled_modules()
        raise SystemExit(f"CI: expected every module of {COMPILED_MODULES} compiled, got {compiled}")


_check_compiled_build()
