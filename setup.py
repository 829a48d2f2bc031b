"""Build: the modules named in kitex_grpc/compiled.py become C extensions through mypyc.

Everything else is in pyproject.toml. Compilation is an optimisation, never a requirement: without
mypyc, without a working C compiler, or with ``KITEX_GRPC_PURE_PYTHON=1``, the package installs as
plain Python (a warning says why) and behaves the same.
"""

from __future__ import annotations

import os
import runpy
import sys
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

_ROOT = os.path.dirname(os.path.abspath(__file__))
_compiled = runpy.run_path(os.path.join(_ROOT, "kitex_grpc", "compiled.py"))


def _warn(why: str) -> None:
    print(f"kitex-grpc: building as plain Python: {why}", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """build_ext that falls back to plain Python when any extension fails to compile.

    mypyc's modules share one library, so one failure drops them all: a partial set would not import.
    """

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # compiler missing or failing: distutils raises several kinds
            for path in self.get_outputs():
                if os.path.exists(path):
                    os.remove(path)
            _warn(f"compiling failed ({exc})")


def _ext_modules() -> list[Any]:
    if os.environ.get("KITEX_GRPC_PURE_PYTHON", "") not in ("", "0"):
        _warn("KITEX_GRPC_PURE_PYTHON is set")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _warn("mypyc is not installed")
        return []
    sources = [_compiled["source_path"](name) for name in _compiled["COMPILED_MODULES"]]
    # The build environment holds no runtime dependency, so their types are unknown (Any) here, which
    # costs nothing: the compiled code only passes such values on. `mypy --strict kitex_grpc`, run
    # with them installed, is the type check; errors in modules that are not compiled are silenced.
    flags = [
        "--ignore-missing-imports",
        "--follow-imports=silent",
        "--allow-subclassing-any",
        "--no-warn-return-any",
        "--no-warn-unused-ignores",
    ]
    try:
        return list(mypycify([*flags, *sources], opt_level="3", group_name="kitex_grpc"))
    except (Exception, SystemExit) as exc:  # mypy exits on a type error: still installable, only slower
        _warn(f"mypyc refused the sources ({exc!r})")
        return []


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
