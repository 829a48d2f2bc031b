"""The build backend (build_backend/kitex_grpc_build.py): mypy is a build requirement of a compiled build
only, in the version uv.lock pins."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.gobuild import ROOT

sys.path.insert(0, str(ROOT / "build_backend"))
import kitex_grpc_build


def _locked_mypy() -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    (version,) = [p["version"] for p in lock["package"] if p["name"] == "mypy"]
    return f"mypy=={version}"


def test_a_compiled_build_requires_the_locked_mypy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KITEX_GRPC_PURE_PYTHON", raising=False)
    assert kitex_grpc_build.compiling()
    assert kitex_grpc_build.mypy_requirement() == _locked_mypy()
    assert kitex_grpc_build._with_mypy(["wheel"]) == ["wheel", _locked_mypy()]
    monkeypatch.setenv("KITEX_GRPC_PURE_PYTHON", "0")  # as the Makefile and setup.py read it
    assert kitex_grpc_build._with_mypy([]) == [_locked_mypy()]


def test_without_a_lock_any_mypy_that_can_compile_is_required(tmp_path: Path) -> None:
    assert kitex_grpc_build.mypy_requirement(tmp_path / "uv.lock") == "mypy>=1.10"
    (tmp_path / "uv.lock").write_text("not toml [", encoding="utf-8")
    assert kitex_grpc_build.mypy_requirement(tmp_path / "uv.lock") == "mypy>=1.10"


def test_a_pure_python_build_requires_no_mypy() -> None:
    # The real hook, as a build frontend calls it: setuptools runs setup.py, which compiles nothing.
    env = {**os.environ, "KITEX_GRPC_PURE_PYTHON": "1", "PYTHONPATH": str(ROOT / "build_backend")}
    code = (
        "import kitex_grpc_build as b; "
        "print(b.get_requires_for_build_wheel(), b.get_requires_for_build_editable())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "building as plain Python: KITEX_GRPC_PURE_PYTHON is set" in result.stderr
    wheel, editable = result.stdout.strip().splitlines()[-1].split("] [")
    assert "mypy" not in wheel and "mypy" not in editable, result.stdout
