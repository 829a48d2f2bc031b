"""``kitex-grpc gen``: .proto files in, typed ``_pb2`` modules and ``<name>_kitex.py`` modules out.

protoc (from grpcio-tools) writes the ``_pb2.py`` and ``.pyi`` files and a descriptor set; this
module reads the descriptor set and renders, per .proto file, a ``_kitex.py`` module with, for each
service: the service info, an async handler base class, a typed client class, and
``new_client``/``new_server`` (plain names when the file has one service, ``new_<service>_client``
and ``new_<service>_server`` always).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

from google.protobuf import descriptor_pb2

from kitex_grpc.codec.protobuf_load import CodegenError, compile_descriptor_set, infer_proto_root
from kitex_grpc.serviceinfo import StreamingMode


@dataclasses.dataclass(frozen=True)
class GeneratedFile:
    proto: str
    pb2_module: Path
    kitex_module: Path


def generate(
    protos: Sequence[str | Path], out_dir: str | Path, include: Sequence[str | Path] = ()
) -> list[GeneratedFile]:
    """Generate code for ``protos`` into ``out_dir``; returns what was written per .proto file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    descriptor_set, rel_names = compile_descriptor_set(
        protos, include, extra_args=(f"--python_out={out}", f"--pyi_out={out}")
    )
    by_name = {fd.name: fd for fd in descriptor_set.file}
    written = []
    for rel in rel_names:
        fd = by_name[rel]
        module_dir = out / Path(rel).parent
        _ensure_packages(out, module_dir)
        stem = Path(rel).stem
        _mark_protoc_stub(module_dir / f"{stem}_pb2.pyi")
        kitex_path = module_dir / f"{stem}_kitex.py"
        kitex_path.write_text(render_module(fd, by_name), encoding="utf-8")
        written.append(GeneratedFile(rel, module_dir / f"{stem}_pb2.py", kitex_path))
    return written


# protoc's .pyi writes nested-message initialisers as a bare ``Mapping``, which mypy --strict
# reports as type-arg; only that code is relaxed, and only in protoc's own stubs.
_STUB_PRAGMA = '# mypy: disable-error-code="type-arg"\n'


def _mark_protoc_stub(path: Path) -> None:
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if not text.startswith(_STUB_PRAGMA):
            path.write_text(_STUB_PRAGMA + text, encoding="utf-8")


def _ensure_packages(out: Path, module_dir: Path) -> None:
    out_resolved = out.resolve()
    current = module_dir.resolve()
    current.mkdir(parents=True, exist_ok=True)
    while True:
        init = current / "__init__.py"
        if not init.exists():
            init.write_text("", encoding="utf-8")
        if current == out_resolved or out_resolved not in current.parents:
            break
        current = current.parent


# -- rendering ---------------------------------------------------------------------------------------


class _Types:
    """Maps fully qualified proto type names to Python expressions, collecting imports."""

    def __init__(
        self, fd: descriptor_pb2.FileDescriptorProto, files: dict[str, descriptor_pb2.FileDescriptorProto]
    ):
        self._fd = fd
        self._index: dict[str, tuple[str, str]] = {}  # ".pkg.Msg.Nested" -> (file name, "Msg.Nested")
        for f in files.values():
            prefix = f".{f.package}" if f.package else ""
            for msg in f.message_type:
                self._add(f.name, prefix, msg, "")
        self.imports: dict[str, str] = {}  # alias -> import line

    def _add(self, file: str, prefix: str, msg: descriptor_pb2.DescriptorProto, outer: str) -> None:
        local = f"{outer}.{msg.name}" if outer else msg.name
        self._index[f"{prefix}.{local}"] = (file, local)
        for nested in msg.nested_type:
            self._add(file, prefix, nested, local)

    def expr(self, type_name: str) -> str:
        file, local = self._index[type_name]
        alias = Path(file).stem + "_pb2" if file == self._fd.name else _module_alias(file)
        if alias not in self.imports:
            module = Path(file).stem + "_pb2"
            if file == self._fd.name:
                self.imports[alias] = f"from . import {module}"
            else:
                package = ".".join(Path(file).parent.parts)
                source = f"from {package} import {module}" if package else f"import {module}"
                self.imports[alias] = f"{source} as {alias}" if package else f"import {module} as {alias}"
        return f"{alias}.{local}"


def _module_alias(file: str) -> str:
    return re.sub(r"\W", "_", file[: -len(".proto")] if file.endswith(".proto") else file) + "_pb2"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def render_module(
    fd: descriptor_pb2.FileDescriptorProto, files: dict[str, descriptor_pb2.FileDescriptorProto]
) -> str:
    types = _Types(fd, files)
    bodies = [_render_service(fd, svc, types) for svc in fd.service]
    lines = [
        f'"""Generated by kitex-grpc gen from {fd.name}. DO NOT EDIT."""',
        "",
        "from __future__ import annotations",
        "",
        "from collections.abc import AsyncIterator",
        "from typing import cast",
        "",
        "import kitex_grpc",
        "from kitex_grpc.callopt import CallOption",
        "from kitex_grpc.client import Client, ClientOption",
        "from kitex_grpc.errors import StatusError",
        "from kitex_grpc.server import Server, ServerOption",
        "from kitex_grpc.serviceinfo import MethodInfo, PayloadCodec, ServiceInfo, StreamingMode",
        "from kitex_grpc.status import StatusCode",
        "from kitex_grpc.streaming import BidiStreamCall, ClientStreamCall, ServerStreamCall",
        "",
        *sorted(types.imports.values()),
        "",
    ]
    exported: list[str] = []
    for svc, body in zip(fd.service, bodies, strict=True):
        lines.append(body)
        exported += [f"{_snake(svc.name).upper()}_SERVICE_INFO", f"{svc.name}Handler", f"{svc.name}Client"]
        exported += [f"new_{_snake(svc.name)}_client", f"new_{_snake(svc.name)}_server"]
    if len(fd.service) == 1:
        svc = fd.service[0]
        lines += [
            "",
            f"new_client = new_{_snake(svc.name)}_client",
            f"new_server = new_{_snake(svc.name)}_server",
        ]
        exported += ["new_client", "new_server"]
    lines += ["", "__all__ = [", *(f'    "{name}",' for name in sorted(exported)), "]", ""]
    return "\n".join(lines)


def _render_service(
    fd: descriptor_pb2.FileDescriptorProto, svc: descriptor_pb2.ServiceDescriptorProto, types: _Types
) -> str:
    name = svc.name
    info = f"{_snake(name).upper()}_SERVICE_INFO"
    methods = []
    handler = [
        "",
        "",
        f"class {name}Handler:",
        f'    """Implement {fd.package + "." if fd.package else ""}{name}: override the methods you serve."""',  # noqa: E501
    ]
    client = [
        "",
        "",
        f"class {name}Client:",
        f'    """A typed client of {name}; make it with ``new_{_snake(name)}_client``."""',
        "",
        "    def __init__(self, client: Client) -> None:",
        "        self.client = client",
        "",
        "    async def close(self) -> None:",
        "        await self.client.close()",
        "",
        f"    async def __aenter__(self) -> {name}Client:",
        "        return self",
        "",
        "    async def __aexit__(self, *exc_info: object) -> None:",
        "        await self.client.close()",
    ]
    for m in svc.method:
        req, resp = types.expr(m.input_type), types.expr(m.output_type)
        mode = StreamingMode.from_flags(m.client_streaming, m.server_streaming).name
        methods.append(f'        MethodInfo("{m.name}", StreamingMode.{mode}, {req}, {resp}),')
        unimpl = f'        raise StatusError(StatusCode.UNIMPLEMENTED, "method {m.name} is not implemented")'
        if mode == "UNARY":
            handler += ["", f"    async def {m.name}(self, request: {req}) -> {resp}:", unimpl]
            client += [
                "",
                f"    async def {m.name}(self, request: {req}, *opts: CallOption) -> {resp}:",
                f'        return cast("{resp}", await self.client.call("{m.name}", request, *opts))',
            ]
        elif mode == "SERVER":
            handler += ["", f"    def {m.name}(self, request: {req}) -> AsyncIterator[{resp}]:", unimpl]
            client += [
                "",
                f"    def {m.name}(self, request: {req}, *opts: CallOption) -> ServerStreamCall[{resp}]:",
                f'        return cast("ServerStreamCall[{resp}]", self.client.server_stream("{m.name}", request, *opts))',  # noqa: E501
            ]
        elif mode == "CLIENT":
            handler += [
                "",
                f"    async def {m.name}(self, requests: AsyncIterator[{req}]) -> {resp}:",
                unimpl,
            ]
            client += [
                "",
                f"    async def {m.name}(self, *opts: CallOption) -> ClientStreamCall[{req}, {resp}]:",
                f'        stream = await self.client.client_stream("{m.name}", *opts)',
                f'        return cast("ClientStreamCall[{req}, {resp}]", stream)',
            ]
        else:
            handler += [
                "",
                f"    def {m.name}(self, requests: AsyncIterator[{req}]) -> AsyncIterator[{resp}]:",
                unimpl,
            ]
            client += [
                "",
                f"    async def {m.name}(self, *opts: CallOption) -> BidiStreamCall[{req}, {resp}]:",
                f'        stream = await self.client.bidi_stream("{m.name}", *opts)',
                f'        return cast("BidiStreamCall[{req}, {resp}]", stream)',
            ]
    if not svc.method:
        handler.append("    pass")
    snake = _snake(name)
    out = [
        "",
        f"{info} = ServiceInfo(",
        f'    "{name}",',
        "    (",
        *methods,
        "    ),",
        f'    package_name="{fd.package}",',
        "    payload_codec=PayloadCodec.PROTOBUF,",
        ")",
        *handler,
        *client,
        "",
        "",
        f"def new_{snake}_client(dest_service: str, *opts: ClientOption) -> {name}Client:",
        f'    """A client of {name} calling ``dest_service``."""',
        f"    return {name}Client(kitex_grpc.new_client({info}, dest_service, *opts))",
        "",
        "",
        f"def new_{snake}_server(handler: {name}Handler, *opts: ServerOption) -> Server:",
        f'    """A server serving {name} with ``handler``; start it with ``await server.start()``."""',
        f"    return kitex_grpc.new_server(*opts).register_service({info}, handler)",
    ]
    return "\n".join(out)


__all__ = [
    "CodegenError",
    "GeneratedFile",
    "compile_descriptor_set",
    "generate",
    "infer_proto_root",
    "render_module",
]
