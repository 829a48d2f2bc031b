"""Plain generated code for the baselines, made at run time from protos/echo/v1/echo.proto.

``grpc_tools.protoc`` writes ``echo/v1/echo_pb2.py``, ``echo_pb2_grpc.py`` (grpcio) and, when grpclib
is installed, ``echo_grpc.py`` (grpclib) into a temporary directory. The orchestrator makes it once and
hands it to its children in ``BENCH_STUBS_DIR``; a server or client started by hand makes its own.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "protos"
PROTO = "echo/v1/echo.proto"
ENV_VAR = "BENCH_STUBS_DIR"
GRPCLIB_PLUGIN = "protoc-gen-grpclib_python"


def _protoc(out: Path, *plugin_args: str) -> str | None:
    """Run protoc in a child process; return its error text, or None on success."""
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}", *plugin_args, PROTO]
    done = subprocess.run(cmd, cwd=PROTO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        return (done.stderr or done.stdout).strip() or f"protoc exited {done.returncode}"
    return None


def generate(out: Path) -> dict[str, str]:
    """Generate every stub flavour into ``out``; return {flavour: error} for those that failed."""
    out.mkdir(parents=True, exist_ok=True)
    errors: dict[str, str] = {}
    err = _protoc(out, f"--python_out={out}", f"--grpc_python_out={out}")
    if err:
        errors["grpcio"] = err
    plugin = shutil.which(GRPCLIB_PLUGIN) or str(Path(sys.executable).parent / GRPCLIB_PLUGIN)
    if not Path(plugin).exists():
        errors["grpclib"] = f"{GRPCLIB_PLUGIN} not found (is grpclib installed?)"
    else:
        err = _protoc(out, f"--plugin={GRPCLIB_PLUGIN}={plugin}", f"--grpclib_python_out={out}")
        if err:
            errors["grpclib"] = err
    (out / "errors.txt").write_text("".join(f"{k}: {v}\n" for k, v in errors.items()))
    return errors


def stub_dir() -> Path:
    """The directory holding the stubs, generated (and removed at exit) if nobody passed one."""
    given = os.environ.get(ENV_VAR)
    if given:
        return Path(given)
    tmp = Path(tempfile.mkdtemp(prefix="bench-stubs-"))
    atexit.register(shutil.rmtree, tmp, True)
    generate(tmp)
    os.environ[ENV_VAR] = str(tmp)
    return tmp


def import_path() -> Path:
    """Put the stub directory first on ``sys.path`` so ``import echo.v1.echo_pb2`` finds it."""
    path = stub_dir()
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    return path


def failure(flavour: str) -> str:
    """Why ``flavour`` could not be generated ('' if it was)."""
    errors = stub_dir() / "errors.txt"
    if not errors.exists():
        return ""
    for line in errors.read_text().splitlines():
        if line.startswith(f"{flavour}: "):
            return line[len(flavour) + 2 :]
    return ""
