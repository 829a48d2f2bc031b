"""Imports flow one way (../shared/design/ARCHITECTURE.md, "Layers"): a lower layer never imports a higher
one, and each third-party protocol library is imported only where its adapter lives.

The test reads every module's import statements (``if TYPE_CHECKING:`` blocks included: a type-only
import couples the layers too) and fails on an edge that is neither allowed by the layers nor listed
in :data:`KNOWN_DEBT`. A listed edge that no longer exists fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "kitex_grpc"

# Layer of each top-level unit of the package (a subpackage or a module), lowest first.
_UNITS_BY_LAYER: tuple[tuple[str, ...], ...] = (
    # 0: the vocabulary everything else speaks
    ("_version", "compiled", "status", "header_keys", "errors", "address", "endpoint", "rpcinfo",
     "metainfo", "serviceinfo", "transport_protocol", "streaming"),
    # 1: sans-IO protocol cores and payload codecs (grpc_meta: gRPC metadata rules over the h2 headers)
    ("protocol", "codec", "grpc_meta"),
    # 2: asyncio shells
    ("transport",),
    # 3: policies and observers
    ("discovery", "governance", "observability", "config", "health", "reflection"),
    # 4: configuration: with_* fold into frozen option records
    ("options", "callopt"),
    # 5
    ("client", "server"),
    # 6: what composes the whole: the curated API, the CLI, code generation, generic calls, IDL loaders
    ("__init__", "cli", "codegen", "generic", "thrift", "protobuf", "eventloop"),
)  # fmt: skip
LAYERS: dict[str, int] = {unit: layer for layer, units in enumerate(_UNITS_BY_LAYER) for unit in units}

# Pairs of units that must not import each other whatever their layers.
FORBIDDEN = {("client", "server"), ("server", "client"), ("governance", "discovery")}

# Third-party libraries and the units (path prefixes under kitex_grpc/) allowed to import them.
ADAPTERS = {
    "grpc": ("transport/grpcio/",),
    "h2": ("protocol/", "transport/h2/"),
    "thriftpy2": ("codec/thrift",),
}

# Edges that break the rules, each with why it is still there; an entry is (importing file, imported
# module). Empty since issue 24: a new entry needs its reason, and the test fails once it is gone.
KNOWN_DEBT: dict[tuple[str, str], str] = {}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


class _Imports(ast.NodeVisitor):
    """Every imported module name of one file, with the package it sits in for relative imports."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.found: set[str] = set()

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            module = ".".join([*base, node.module] if node.module else base)
        else:
            module = node.module or ""
        if module == "kitex_grpc":  # `from kitex_grpc import metainfo` imports the unit metainfo
            self.found.update(
                f"kitex_grpc.{alias.name}" if _unit(f"kitex_grpc.{alias.name}") in LAYERS else module
                for alias in node.names
            )
        else:
            self.found.add(module)


def _imports() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        parts = ["kitex_grpc", *rel.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
            package = ".".join(parts)
        else:
            package = ".".join(parts[:-1])
        visitor = _Imports(package)
        visitor.visit(ast.parse(path.read_text(), filename=str(path)))
        out[rel.as_posix()] = visitor.found
    return out


def _violations() -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for rel, modules in _imports().items():
        unit = _unit("kitex_grpc." + rel.removesuffix(".py").replace("/", "."))
        if rel == "__init__.py":
            unit = "__init__"
        for module in modules:
            top = module.split(".")[0]
            if top in ADAPTERS and not rel.startswith(ADAPTERS[top]):
                found[(rel, top)] = f"imports {top} outside {', '.join(ADAPTERS[top])}"
            if top != "kitex_grpc":
                continue
            target = _unit(module)
            if target == unit:
                continue
            if target not in LAYERS:
                found[(rel, module)] = f"imports {module}, a unit with no layer (add it to LAYERS)"
            elif LAYERS[target] > LAYERS[unit]:
                found[(rel, module)] = f"{unit} ({LAYERS[unit]}) imports {target} ({LAYERS[target]})"
            elif (unit, target) in FORBIDDEN:
                found[(rel, module)] = f"{unit} must not import {target}"
    return found


def test_every_unit_has_a_layer() -> None:
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    units.discard("__pycache__")
    assert units - set(LAYERS) == set(), "new top-level units need a layer in LAYERS"


def test_imports_flow_downward() -> None:
    new = {edge: why for edge, why in _violations().items() if edge not in KNOWN_DEBT}
    assert new == {}, "imports against the layers (ARCHITECTURE.md):\n" + "\n".join(
        f"  kitex_grpc/{rel}: {why}" for (rel, _), why in sorted(new.items())
    )


def test_known_debt_is_still_owed() -> None:
    paid = set(KNOWN_DEBT) - set(_violations())
    assert paid == set(), f"these edges are gone: remove them from KNOWN_DEBT: {sorted(paid)}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from kitex_grpc.client import Client\n", {"kitex_grpc.client"}),
        ("from kitex_grpc import metainfo, TransportProtocol\n", {"kitex_grpc.metainfo", "kitex_grpc"}),
        ("from ...options import client\n", {"kitex_grpc.options"}),
        ("if TYPE_CHECKING:\n    import grpc\n", {"grpc"}),
    ],
)
def test_the_reader_sees_each_import_form(source: str, expected: set[str]) -> None:
    visitor = _Imports("kitex_grpc.transport.h2")
    visitor.visit(ast.parse(source))
    assert visitor.found == expected


# h2 is fenced: every use of its private API (and every subclass of its classes) lives in this package.
H2_FENCE = "protocol/h2_patched/"


def _h2_private_names() -> set[str]:
    """The private names of h2's connection, stream, frame buffer, state machines and window manager."""
    import h2.config
    import h2.connection

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "a")])
    stream = conn.streams[1]
    objects = (
        conn,
        stream,
        conn.incoming_buffer,
        conn.state_machine,
        stream.state_machine,
        conn.local_settings,
    )
    objects += (stream._inbound_window_manager,)
    return {
        name
        for obj in objects
        for name in [*vars(obj), *dir(type(obj))]
        if name.startswith("_") and not name.startswith("__")
    }


def test_h2_private_api_only_in_its_fence() -> None:
    private = _h2_private_names()
    assert {"_data_to_send", "_receive_frame", "_inbound_window_manager"} <= private
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(H2_FENCE):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            # A module's own private state is reached through self/cls; any other reach of an h2
            # private name (conn._data_to_send, stream._inbound_window_manager) is h2's.
            if isinstance(node, ast.Attribute) and node.attr in private:
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                    found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.ClassDef):
                found += [
                    f"{rel}:{node.lineno}: class {node.name} subclasses {ast.unparse(base)}"
                    for base in node.bases
                    if ast.unparse(base).startswith(("h2.", "hyperframe."))
                ]
    assert found == [], f"h2 internals outside kitex_grpc/{H2_FENCE}:\n" + "\n".join(found)
