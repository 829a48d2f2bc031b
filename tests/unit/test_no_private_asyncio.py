"""kitex_grpc uses no private asyncio API (issue 24 item 3): no private name of asyncio's modules or of
its C accelerator ``_asyncio`` is imported, reached as an attribute or named in a string (``getattr``).

The private names are read from asyncio itself, so a name asyncio adds is covered too. The scan reads
the source (the AST), so it holds for the compiled build as well.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import pkgutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "kitex_grpc"


def _asyncio_private_names() -> set[str]:
    """Private module-level names of asyncio's submodules and of ``_asyncio``."""
    modules = [importlib.import_module("_asyncio")]
    for info in pkgutil.iter_modules(asyncio.__path__):
        try:
            modules.append(importlib.import_module(f"asyncio.{info.name}"))
        except ImportError:  # another platform's module (windows_events)
            continue
    return {
        name
        for module in modules
        for name in vars(module)
        if name.startswith("_") and not name.startswith("__")
    }


def _uses(tree: ast.AST, private: set[str]) -> list[tuple[int, str]]:
    """Where ``tree`` reaches one of ``private`` or the ``_asyncio`` module."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, f"import {a.name}") for a in node.names if a.name.split(".")[0] == "_asyncio"
            ]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] == "_asyncio":
                found.append((node.lineno, f"from {module} import ..."))
            elif module.split(".")[0] == "asyncio":
                found += [
                    (node.lineno, f"from {module} import {a.name}") for a in node.names if a.name in private
                ]
        elif isinstance(node, ast.Attribute) and node.attr in private:
            if ast.unparse(node.value).split(".")[0] in ("asyncio", "_asyncio"):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in private:
            found.append((node.lineno, repr(node.value)))  # getattr(asyncio.tasks, "_enter_task")
    return found


def test_the_scan_knows_asyncio_task_bookkeeping() -> None:
    private = _asyncio_private_names()
    assert {"_enter_task", "_leave_task", "_current_tasks", "_register_task", "_get_running_loop"} <= private


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio\nasyncio.tasks._enter_task(loop, task)",
        "import asyncio\nenter = getattr(asyncio.tasks, '_enter_task', None)",
        "from asyncio.tasks import _current_tasks",
        "from _asyncio import current_task",
        "import _asyncio",
        "import asyncio\nasyncio.events._get_running_loop()",
    ],
)
def test_the_scan_finds_each_form(source: str) -> None:
    assert _uses(ast.parse(source), _asyncio_private_names()) != []


def test_the_scan_passes_public_api() -> None:
    source = (
        "import asyncio\nasyncio.Task(coro, loop=loop, context=ctx)\nself._loop = asyncio.get_running_loop()"
    )
    assert _uses(ast.parse(source), _asyncio_private_names()) == []


def test_no_private_asyncio_api_in_the_package() -> None:
    private = _asyncio_private_names()
    found = [
        f"{path.relative_to(PACKAGE).as_posix()}:{line}: {what}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, what in _uses(ast.parse(path.read_text(), filename=str(path)), private)
    ]
    assert found == [], "private asyncio API in kitex_grpc:\n" + "\n".join(found)
