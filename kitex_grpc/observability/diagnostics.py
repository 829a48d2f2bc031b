"""Diagnostics: a client's or server's effective configuration as readable text.

Every ``with_*`` option records itself (name and value) when options are folded, as Kitex's
``DebugInfo`` does. :func:`describe_client` / :func:`describe_server` (also ``client.describe()`` /
``server.describe()``) print those records in the order they were given, followed by the effective
values, the middleware chain as built, tracers and lifecycle hooks, and the live governance values
with their sources (``client.live`` / ``server.live``, :mod:`kitex_grpc.config.live`).
:func:`describe_options` does the same for a bare ``ClientOptions`` / ``ServerOptions``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from kitex_grpc.serviceinfo import ServiceInfo

__all__ = ["DescribedClient", "DescribedServer", "describe_client", "describe_options", "describe_server"]


class _Options(Protocol):
    @property
    def tracers(self) -> tuple[Any, ...]: ...


class _ServerOptions(_Options, Protocol):
    @property
    def hooks(self) -> tuple[Any, ...]: ...


class DescribedClient(Protocol):
    """What :func:`describe_client` reads of a :class:`kitex_grpc.client.Client` (the layer above)."""

    @property
    def service_info(self) -> ServiceInfo: ...
    @property
    def chain_names(self) -> tuple[str, ...]: ...
    @property
    def options(self) -> _Options: ...


class DescribedServer(Protocol):
    """What :func:`describe_server` reads of a :class:`kitex_grpc.server.Server` (the layer above)."""

    @property
    def services(self) -> tuple[ServiceInfo, ...]: ...
    @property
    def serving(self) -> bool: ...
    @property
    def chain_names(self) -> tuple[str, ...]: ...
    @property
    def options(self) -> _ServerOptions: ...


# Fields shown only through their option records: they hold callables or secrets, not settings.
_OPAQUE = frozenset({"records", "tls"})


def _value(value: Any) -> str:
    if isinstance(value, tuple) and value and all(callable(v) for v in value):
        return "[" + ", ".join(getattr(v, "__qualname__", None) or repr(v) for v in value) + "]"
    if hasattr(value, "name") and hasattr(value, "value") and type(value).__module__.startswith("kitex_grpc"):
        return str(value.name)  # enums
    return repr(value)


def describe_options(options: Any) -> str:
    """The option records (what was set, in order) and the effective values of ``options``."""
    lines = [f"{type(options).__name__}:", "  options (as given):"]
    records = getattr(options, "records", ())
    if not records:
        lines.append("    (none: all defaults)")
    for record in records:
        lines.append(f"    {record.name}({record.value})")
    lines.append("  effective:")
    for field in dataclasses.fields(options):
        if field.name in _OPAQUE:
            continue
        value = getattr(options, field.name)
        mark = "" if value == field.default else "  *"
        lines.append(f"    {field.name} = {_value(value)}{mark}")
    lines.append(f"    tls = {'on' if getattr(options, 'tls', None) is not None else 'off'}")
    return "\n".join(lines)


def describe_client(client: DescribedClient) -> str:
    """The client's destination, service, chain and effective options."""
    service = client.service_info
    lines = [
        f"Client of {service.full_name} -> {getattr(client, '_dest', '?')!r}",
        f"  chain: {' -> '.join(client.chain_names)}",
        f"  tracers: {_tracers(client)}",
        *_live(client),
        _indent(describe_options(client.options)),
    ]
    return "\n".join(lines)


def describe_server(server: DescribedServer) -> str:
    """The server's services, state, chain, hooks and effective options."""
    opts = server.options
    state = "serving" if server.serving else "not serving"
    services = ", ".join(s.full_name for s in server.services) or "(none)"
    hooks = ", ".join(type(h).__name__ for h in opts.hooks) or "(none)"
    lines = [
        f"Server ({state})",
        f"  services: {services}",
        f"  chain: {' -> '.join(server.chain_names)}",
        f"  tracers: {_tracers(server)}",
        f"  lifecycle hooks: {hooks}",
        *_live(server),
        _indent(describe_options(opts)),
    ]
    return "\n".join(lines)


def _live(owner: Any) -> list[str]:
    """The live governance values (``owner.live``) and where each came from: code, go-default
    (config-etcd's implicit defaults), dict, file or etcd."""
    records = getattr(getattr(owner, "live", None), "records", None)
    if records is None or not records.values:
        return []
    return ["  live config [source]:", *(f"    {line}" for line in records.lines())]


def _tracers(owner: Any) -> str:
    tracers = owner.options.tracers
    return ", ".join(repr(t) for t in tracers) if tracers else "(none)"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
