"""The PEP 517 build backend of kitex-grpc: setuptools', with mypy required only for a compiled build.

setup.py compiles the modules of ``kitex_grpc/compiled.py`` with mypyc, which comes with mypy. A build
told ``KITEX_GRPC_PURE_PYTHON=1`` compiles nothing and makes a pure-Python wheel (``py3-none-any``), so
it does not ask for mypy at all. A compiled build asks for the mypy version that ``uv.lock`` pins (the
sdist carries the lock), or any mypy from 1.10 on where there is no lock to read.

pyproject.toml names this module (``backend-path``); it is not part of the installed package.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from setuptools import build_meta  # type: ignore[import-untyped]

# Every hook setuptools defines, then two of them wrapped.
from setuptools.build_meta import *  # type: ignore[import-untyped]  # noqa: F403

PURE_PYTHON_VARIABLE = "KITEX_GRPC_PURE_PYTHON"
# mypyc's first release able to compile these modules (native classes with __slots__, Final statics).
MYPY_FALLBACK = "mypy>=1.10"
_LOCK = Path(__file__).resolve().parents[1] / "uv.lock"


def compiling() -> bool:
    """Whether this build compiles (mypyc, where a C compiler is at hand): unless told plain Python."""
    return os.environ.get(PURE_PYTHON_VARIABLE, "") in ("", "0")


def mypy_requirement(lock: Path = _LOCK) -> str:
    """``mypy==<the locked version>``, or :data:`MYPY_FALLBACK` without a lock that pins it."""
    try:
        packages = tomllib.loads(lock.read_text(encoding="utf-8")).get("package", [])
    except (OSError, tomllib.TOMLDecodeError):
        return MYPY_FALLBACK
    versions = [p.get("version") for p in packages if p.get("name") == "mypy"]
    return f"mypy=={versions[0]}" if len(versions) == 1 and versions[0] else MYPY_FALLBACK


def _with_mypy(requires: list[str]) -> list[str]:
    return [*requires, mypy_requirement()] if compiling() else requires


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    return _with_mypy(build_meta.get_requires_for_build_wheel(config_settings))


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    return _with_mypy(build_meta.get_requires_for_build_editable(config_settings))
