"""The package as users install it: built as an sdist and a wheel, installed into a fresh venv outside the
source tree (not editable), code generated with the installed ``kitex-grpc gen``, every transport called.

Catches what an editable install hides: package data left out (.proto files, py.typed), an import that
reaches into the source tree, a compiled module that was not packaged, a missing console script. Both
wheels are built and installed: the compiled one (where a C compiler is at hand) and the pure-Python one
(``KITEX_GRPC_PURE_PYTHON=1``, ``py3-none-any``). ``make wheel-test`` runs it (it takes a minute or two:
mypyc compiles the wheel).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from kitex_grpc.compiled import COMPILED_MODULES
from tests.gobuild import IN_CI, ROOT, unavailable

pytestmark = [pytest.mark.wheel, pytest.mark.timeout(900)]


def _uv() -> str:
    uv = ROOT / ".cache" / "bootstrap" / "bin" / "uv"
    found = str(uv) if uv.exists() else shutil.which("uv")
    if found is None:
        unavailable(
            "uv is needed to build and install the wheel: `make test` installs it into .cache/bootstrap"
        )
    assert found is not None
    return found


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _build(out: Path, *, pure: bool) -> Path:
    """``uv build``: the sdist, then the wheel built from that sdist (so the sdist must be complete)."""
    env = {k: v for k, v in os.environ.items() if k != "KITEX_GRPC_PURE_PYTHON"}
    if pure:
        env["KITEX_GRPC_PURE_PYTHON"] = "1"
    _run(
        _uv(),
        "build",
        "-q",
        "--no-build-isolation",
        "--python",
        sys.executable,
        "--out-dir",
        out,
        cwd=ROOT,
        env=env,
    )
    return out


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel of a default build: compiled where a C compiler is at hand."""
    return _build(tmp_path_factory.mktemp("dist"), pure=False)


@pytest.fixture(scope="module")
def dist_pure(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel of a ``KITEX_GRPC_PURE_PYTHON=1`` build."""
    return _build(tmp_path_factory.mktemp("dist-pure"), pure=True)


def test_sdist_and_wheel_carry_license_readme_and_package_data(dist: Path) -> None:
    (wheel,) = dist.glob("kitex_grpc-*.whl")
    (sdist,) = dist.glob("kitex_grpc-*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    assert "kitex_grpc/py.typed" in names
    assert any(n.endswith("dist-info/licenses/LICENSE") for n in names), names
    protos = [n for n in names if n.endswith(".proto")]
    assert protos, "no .proto file packaged"
    metadata = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("dist-info/METADATA"))).decode()
    )
    assert "License-Expression: Apache-2.0" in metadata
    assert "make demo" in metadata  # the README is the long description
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    top = members[0].split("/")[0]
    for required in (
        "LICENSE",
        "README.md",
        "pyproject.toml",
        "setup.py",
        "uv.lock",
        "build_backend/kitex_grpc_build.py",
        "kitex_grpc/py.typed",
    ):
        assert f"{top}/{required}" in members, required
    if IN_CI:  # CI builds where a C compiler is: the wheel must carry every compiled module
        for module in COMPILED_MODULES:
            stem = module.replace(".", "/")
            assert any(n.startswith(stem + ".") and n.endswith(".so") for n in names), module


def test_the_pure_python_wheel_is_for_any_platform_and_carries_no_extension(dist_pure: Path) -> None:
    (wheel,) = dist_pure.glob("kitex_grpc-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith(".so")], names
    for module in COMPILED_MODULES:  # every module there, as source
        assert module.replace(".", "/") + ".py" in names, module
    assert not [n for n in names if n.startswith("build_backend")], "the build backend is not installed"


@pytest.mark.parametrize("build", ["compiled", "pure"])
def test_installed_wheel_generates_code_and_calls_every_transport(
    build: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    uv = _uv()
    (wheel,) = request.getfixturevalue("dist" if build == "compiled" else "dist_pure").glob(
        "kitex_grpc-*.whl"
    )
    venv = tmp_path / "venv"
    _run(uv, "venv", "-q", "--python", sys.executable, venv, cwd=tmp_path)
    # The runtime dependencies as the lock pins them, and the wheel: not the source tree.
    requirements = tmp_path / "requirements.txt"
    _run(
        uv,
        "export",
        "-q",
        "--frozen",
        "--no-dev",
        "--all-extras",
        "--no-emit-project",
        "--no-hashes",
        "-o",
        requirements,
        cwd=ROOT,
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "KITEX_GRPC_PURE_PYTHON")
    }
    _run(
        uv,
        "pip",
        "install",
        "-q",
        "--python",
        venv / "bin" / "python",
        "-r",
        requirements,
        wheel,
        cwd=tmp_path,
        env=env,
    )

    work = tmp_path / "work"
    (work / "protos" / "echo" / "v1").mkdir(parents=True)
    shutil.copy(ROOT / "protos" / "echo" / "v1" / "echo.proto", work / "protos" / "echo" / "v1")
    shutil.copy(ROOT / "idl" / "echo.thrift", work / "echo.thrift")
    shutil.copy(Path(__file__).with_name("wheel_smoke.py"), work / "wheel_smoke.py")
    _run(venv / "bin" / "kitex-grpc", "gen", "protos/echo/v1/echo.proto", "-o", "gen", cwd=work, env=env)
    assert (work / "gen" / "echo" / "v1" / "echo_kitex.py").exists()

    out = _run(venv / "bin" / "python", "-I", "wheel_smoke.py", cwd=work, env=env, timeout=300)
    lines = out.splitlines()
    installed_at = Path(lines[0].removeprefix("kitex_grpc from "))
    assert installed_at.is_relative_to(venv), f"kitex_grpc imported from {installed_at}, not the venv"
    if build == "pure":
        assert lines[1].startswith("kitex-grpc: plain Python"), lines[1]
    elif IN_CI:
        assert lines[1] == f"kitex-grpc: {len(COMPILED_MODULES)} modules compiled with mypyc", lines[1]
    checks = [line for line in lines[2:] if line.endswith((": ok", ": FAILED"))]
    assert checks and all(line.endswith(": ok") for line in checks), out
    assert len(checks) == 2 * 4 + 1 + 3, out
