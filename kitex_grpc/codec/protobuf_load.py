"""``.proto`` files at run time: protoc into a private descriptor pool, message classes and service infos.

The payload side of :func:`kitex_grpc.protobuf.load` (the public entry, which re-exports it) and of
``kitex-grpc gen`` (:mod:`kitex_grpc.codegen`, which runs :func:`compile_descriptor_set` with output
flags). It lives in the codec layer so that a lower layer that needs messages of a ``.proto`` file
shipped with the package (discovery's etcd client, ``discovery/etcd_rpc.proto``) loads them without
importing the layers above.

protoc (from grpcio-tools) compiles the files once into a descriptor set; the descriptors go into a
private pool, so a loaded file never clashes with a generated module of the same name in protobuf's
default pool (their message classes are distinct).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from kitex_grpc.serviceinfo import MethodInfo, PayloadCodec, ServiceInfo, StreamingMode

__all__ = ["CodegenError", "ProtoModule", "compile_descriptor_set", "infer_proto_root", "load"]

_PACKAGE_RE = re.compile(r"^\s*package\s+([A-Za-z_][\w.]*)\s*;", re.MULTILINE)


class CodegenError(Exception):
    """protoc failed, or an input cannot be generated (re-exported as
    :class:`kitex_grpc.codegen.CodegenError`)."""


def infer_proto_root(proto: Path) -> Path:
    """The include root of ``proto``: its directory minus the package path, when they match.

    ``protos/echo/v1/echo.proto`` with ``package echo.v1`` gives ``protos``, so the output lands in
    ``<out>/echo/v1/``; otherwise the file's own directory.
    """
    match = _PACKAGE_RE.search(proto.read_text(encoding="utf-8"))
    parent = proto.resolve().parent
    if match:
        parts = match.group(1).split(".")
        if len(parts) <= len(parent.parts) and list(parent.parts[-len(parts) :]) == parts:
            return parent.parents[len(parts) - 1]
    return parent


def relative_name(proto: Path, roots: Sequence[Path]) -> str:
    """``proto``'s name under the first include root that holds it (protoc's name for the file)."""
    resolved = proto.resolve()
    for root in roots:
        try:
            return resolved.relative_to(root).as_posix()
        except ValueError:
            continue
    raise CodegenError(f"{proto} is not under any include path ({', '.join(map(str, roots))})")


def compile_descriptor_set(
    protos: Sequence[str | Path],
    include: Sequence[str | Path] = (),
    *,
    extra_args: Sequence[str] = (),
) -> tuple[descriptor_pb2.FileDescriptorSet, list[str]]:
    """Run protoc on ``protos`` and return the descriptor set (imports included, in dependency order)
    and each file's name relative to its include root.

    ``extra_args`` are passed to protoc (e.g. ``--python_out=...``); well-known types resolve from
    grpcio-tools' bundled protos.
    """
    from grpc_tools import protoc  # only when compiling: grpcio-tools is large

    files = [Path(p) for p in protos]
    if not files:
        raise CodegenError("no .proto files given")
    for f in files:
        if not f.is_file():
            raise CodegenError(f"no such file: {f}")
    roots = [Path(i).resolve() for i in include] or sorted({infer_proto_root(f) for f in files})
    rel_names = [relative_name(f, roots) for f in files]
    well_known = str(resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        descriptor_path = Path(tmp, "set.pb")
        args = [
            "protoc",
            *(f"-I{r}" for r in roots),
            f"-I{well_known}",
            *extra_args,
            f"--descriptor_set_out={descriptor_path}",
            "--include_imports",
            *rel_names,
        ]
        if protoc.main(args) != 0:
            raise CodegenError(f"protoc failed for {', '.join(rel_names)} (see the messages above)")
        return descriptor_pb2.FileDescriptorSet.FromString(descriptor_path.read_bytes()), rel_names


class ProtoModule:
    """The messages and services of loaded ``.proto`` files.

    Messages of the loaded files' packages are attributes by short name (``mod.EchoRequest``); any
    message, nested or imported, is found by full name with :meth:`message`.
    """

    def __init__(self, pool: descriptor_pool.DescriptorPool, files: Sequence[str]) -> None:
        self._pool = pool
        self._short: dict[str, type[Message]] = {}
        self._services: dict[str, ServiceInfo] = {}
        for name in files:
            fd = pool.FindFileByName(name)
            for msg in fd.message_types_by_name.values():
                self._short.setdefault(msg.name, message_factory.GetMessageClass(msg))
            for svc in fd.services_by_name.values():
                self._services[svc.name] = self._service_info(svc)

    def message(self, full_name: str) -> type[Message]:
        """The message class named ``package.Message`` (or ``package.Outer.Inner``)."""
        return message_factory.GetMessageClass(self._pool.FindMessageTypeByName(full_name))

    def service_info(self, name: str) -> ServiceInfo:
        """The service info of the service ``name`` (short name, as declared)."""
        try:
            return self._services[name]
        except KeyError:
            raise KeyError(f"no service {name!r}; loaded services: {sorted(self._services)}") from None

    @property
    def services(self) -> dict[str, ServiceInfo]:
        return dict(self._services)

    def __getattr__(self, name: str) -> Any:
        # Any, not type[Message]: the fields of a message loaded at run time are unknown to a type
        # checker, and typeshed's Message.__init__ takes no keyword arguments (types-protobuf >= 6).
        try:
            return self._short[name]
        except KeyError:
            raise AttributeError(f"no message {name!r} in the loaded files") from None

    @staticmethod
    def _service_info(svc: Any) -> ServiceInfo:
        methods = []
        for m in svc.methods:
            mode = StreamingMode.from_flags(m.client_streaming, m.server_streaming)
            request = message_factory.GetMessageClass(m.input_type)
            response = message_factory.GetMessageClass(m.output_type)
            methods.append(MethodInfo(m.name, mode, request, response))
        return ServiceInfo(
            svc.name, methods, package_name=svc.file.package, payload_codec=PayloadCodec.PROTOBUF
        )


def load(path: str | Path, *more: str | Path, include: Sequence[str | Path] = ()) -> ProtoModule:
    """Compile ``.proto`` files with protoc and load them into a private descriptor pool.

    ``include`` sets the import roots; by default each file's root is inferred from its ``package``
    (as ``kitex-grpc gen`` does). Raises :class:`CodegenError` when protoc fails.
    """
    descriptor_set, names = compile_descriptor_set([path, *more], include)
    pool = descriptor_pool.DescriptorPool()
    for fd in descriptor_set.file:  # --include_imports lists dependencies first
        pool.Add(fd)
    return ProtoModule(pool, names)
