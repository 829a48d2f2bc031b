"""Live governance config: the Kitex config-centre model (kitex-contrib config-etcd and siblings).

- :class:`~kitex_grpc.config.source.ConfigSource` and three sources: :class:`DictSource` (tests),
  :class:`~kitex_grpc.config.file.FileSource` (a JSON or YAML file, reloaded on change) and
  :class:`~kitex_grpc.config.etcd.EtcdConfigSource` (config-etcd's keys and JSON);
- :mod:`kitex_grpc.config.model`: the JSON of each category, checked field by field;
- :mod:`kitex_grpc.config.live`: ``client.live`` / ``server.live``, the update APIs, and the rules
  by which code-set options win.

Use ``client.with_config_source(source)`` / ``server.with_config_source(source)``.
"""

from __future__ import annotations

from typing import Any

from kitex_grpc.config.live import LiveClientConfig, LiveServerConfig
from kitex_grpc.config.source import KEEP, ConfigKey, ConfigSource, DictSource

__all__ = [
    "KEEP",
    "ConfigKey",
    "ConfigSource",
    "DictSource",
    "EtcdConfigSource",
    "FileSource",
    "LiveClientConfig",
    "LiveServerConfig",
]


def __getattr__(name: str) -> Any:
    # imported on demand: the etcd source pulls in the etcd client and its gRPC transport
    if name == "EtcdConfigSource":
        from kitex_grpc.config.etcd import EtcdConfigSource

        return EtcdConfigSource
    if name == "FileSource":
        from kitex_grpc.config.file import FileSource

        return FileSource
    raise AttributeError(f"module 'kitex_grpc.config' has no attribute {name!r}")
