"""Thrift IDL for generic calls: loaded from a path or from text, and what thriftpy2 forgets.

thriftpy2 keeps ``required`` in its ``thrift_spec`` but not ``optional``: an optional field and a
default-requiredness field look the same. Kitex writes them differently when absent (omitted vs the
zero value, KITEX-WIRE-2.md §13.2), so :func:`optional_fields` reads the optional field ids of each
struct from the IDL text itself (comments and string literals removed first).
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
import threading
import types
from pathlib import Path
from typing import Any, Final

from kitex_grpc.codec import thrift as thrift_codec

__all__ = ["IDLError", "ThriftIDL", "load_idl", "optional_fields"]

_COUNTER = itertools.count(1)
_OPTIONAL: dict[type, frozenset[int]] = {}
_LOCK = threading.Lock()
_COMMENTS: Final = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|/\*.*?\*/|//[^\n]*|#[^\n]*', re.S)
_HEAD: Final = re.compile(r"\b(struct|exception|union)\s+([A-Za-z_][\w.]*)[^{;]*\{")
_OPT_FIELD: Final = re.compile(r"(-?\d+)\s*:\s*optional\b")


class IDLError(ValueError):
    """An IDL that cannot be loaded (parse error, missing include, no such service)."""


class ThriftIDL:
    """A loaded Thrift IDL: thriftpy2's module and the service generic calls use.

    ``service_name``: the IDL service; by default the last one in the main file (Kitex's
    ``LastServiceOnly`` parse mode).
    """

    def __init__(self, module: Any, service_name: str | None = None) -> None:
        services: list[Any] = list(module.__thrift_meta__.get("services", []))
        if not services:
            raise IDLError("the IDL declares no service")
        if service_name is None:
            self.service = services[-1]
        else:
            found = [s for s in services if s.__name__ == service_name]
            if not found:
                names = ", ".join(s.__name__ for s in services)
                raise IDLError(f"no service {service_name!r} in the IDL (it has: {names})")
            self.service = found[0]
        self.module = module
        self.service_name: str = self.service.__name__

    @property
    def methods(self) -> list[str]:
        return list(self.service.thrift_services)


def load_idl(
    idl: str | os.PathLike[str],
    *,
    include_dirs: list[str | os.PathLike[str]] | None = None,
    service_name: str | None = None,
    text: bool | None = None,
) -> ThriftIDL:
    """Load an IDL given as a path, or as its text (``text=True``, or any string with a newline)."""
    includes: list[str | os.PathLike[str]] = [str(d) for d in include_dirs or []]
    is_text = text if text is not None else isinstance(idl, str) and "\n" in idl
    unique = f"generic{next(_COUNTER)}"
    try:
        if is_text:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{unique}.thrift"
                path.write_text(str(idl))
                module = thrift_codec.load(path, f"{unique}_thrift", include_dirs=[*includes, os.getcwd()])
                _scan(module, str(idl))
        else:
            path = Path(idl)
            if not path.is_file():
                raise IDLError(f"{path}: no such IDL file")
            name = re.sub(r"\W", "_", path.stem)
            module = thrift_codec.load(path, f"{name}_{unique}_thrift", include_dirs=includes or None)
            _scan(module, path.read_text())
    except IDLError:
        raise
    except Exception as exc:  # thriftpy2 raises its parser errors, OSError and others
        raise IDLError(f"cannot load the Thrift IDL: {exc}") from None
    return ThriftIDL(module, service_name)


def _scan(module: Any, source: str, seen: set[int] | None = None) -> None:
    seen = set() if seen is None else seen
    if id(module) in seen:
        return
    seen.add(id(module))
    body = _COMMENTS.sub(lambda m: "" if m.group(0)[0] in "/#" else '""', source)
    with _LOCK:
        for match in _HEAD.finditer(body):
            kind, name = match.group(1), match.group(2)
            end = _block_end(body, match.end())
            cls = getattr(module, name, None)
            if not isinstance(cls, type):
                continue
            block = body[match.end() : end]
            if kind == "union":  # every member of a union is optional
                ids = frozenset(getattr(cls, "thrift_spec", {}))
            else:
                ids = frozenset(int(m.group(1)) for m in _OPT_FIELD.finditer(block))
            _OPTIONAL[cls] = ids
    for value in vars(module).values():
        if isinstance(value, types.ModuleType) and hasattr(value, "__thrift_file__"):
            try:
                included = Path(value.__thrift_file__).read_text()
            except OSError:
                continue
            _scan(value, included, seen)


def _block_end(text: str, start: int) -> int:
    depth = 1
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
    return len(text)


def optional_fields(struct_type: Any) -> frozenset[int]:
    """The ids of the ``optional`` fields of a struct loaded by :func:`load_idl` (empty otherwise)."""
    return _OPTIONAL.get(struct_type, frozenset())
