"""etcd registry and resolver in kitex-contrib registry-etcd's layout (KITEX-WIRE.md §6.3), so Go Kitex
clients find Python servers and Python clients find Go servers.

- key: ``<prefix>/<service>/<host>:<port>``, default prefix ``kitex/registry-etcd``;
- value: ``{"network":"tcp","address":"<host>:<port>","weight":10,"tags":null}`` (fields in that
  order, Go's compact JSON) (``etcd:common.go instanceInfo``);
- the key is put with a lease, 60 s TTL by default (env ``KITEX_ETCD_REGISTRY_LEASE_TTL``), kept
  alive with LeaseKeepAlive; if the lease is lost the registry grants a new one and puts the key
  again (``etcd:etcd_registry.go keepalive``/``retry``); deregister deletes the key and revokes;
- the resolver reads the prefix ``<prefix>/<service>/``, skips values that do not parse, treats
  weight <= 0 as 10 and, like registry-etcd, fails when nothing is registered (so the cache keeps the
  last good list). It also watches the prefix so changes apply at once, not only at the 5 s refresh.

etcd is spoken to over its v3 gRPC API (KV, Lease, Watch) by a
:class:`~kitex_grpc.discovery.grpc_caller.GrpcCaller` per service: the grpcio client transport with
the client's defaults, one channel per endpoint reused by every call. The messages come from
``etcd_rpc.proto`` beside this module, compiled once at first use by the codec layer's loader
(:func:`kitex_grpc.codec.protobuf_load.load`, what :func:`kitex_grpc.protobuf.load` is).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from kitex_grpc.codec import protobuf_load
from kitex_grpc.codec.protobuf_load import ProtoModule
from kitex_grpc.discovery.grpc_caller import GrpcCaller
from kitex_grpc.discovery.registry import Info
from kitex_grpc.discovery.resolver import DEFAULT_WEIGHT, Change, Instance, Result, default_diff
from kitex_grpc.errors import ServiceDiscoveryError

if TYPE_CHECKING:
    from kitex_grpc.rpcinfo import EndpointInfo

_log = logging.getLogger("kitex_grpc.discovery.etcd")

DEFAULT_PREFIX = "kitex/registry-etcd"
DEFAULT_TTL = 60
TTL_ENV = "KITEX_ETCD_REGISTRY_LEASE_TTL"


_API: ProtoModule | None = None


def _api() -> ProtoModule:
    """etcd's v3 API (``etcd_rpc.proto`` beside this module), compiled once at first use."""
    global _API
    if _API is None:
        with resources.as_file(resources.files("kitex_grpc.discovery") / "etcd_rpc.proto") as proto:
            # The file declares package etcdserverpb but lives flat in the package: its own root.
            _API = protobuf_load.load(proto, include=[proto.parent])
    return _API


def prefix_range_end(prefix: bytes) -> bytes:
    """etcd ``clientv3.GetPrefixRangeEnd``: the smallest key after every key starting with ``prefix``."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\x00"


def service_key(prefix: str, service: str, address: str) -> str:
    return f"{prefix}/{service}/{address}"


def encode_instance(address: str, weight: int, tags: Any) -> str:
    """registry-etcd's JSON value (Go ``json.Marshal`` of ``instanceInfo``: compact, fields in order)."""
    value = {"network": "tcp", "address": address, "weight": weight, "tags": dict(tags) if tags else None}
    return json.dumps(value, separators=(",", ":"))


def decode_instance(raw: bytes) -> Instance | None:
    """An :class:`Instance` from a registry-etcd value, or ``None`` if it does not parse."""
    try:
        value = json.loads(raw)
        address = value["address"]
        weight = int(value.get("weight") or 0)
        tags = value.get("tags") or {}
        network = value.get("network") or "tcp"
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(address, str) or not isinstance(tags, dict):
        return None
    return Instance(address, weight if weight > 0 else DEFAULT_WEIGHT, tags, network)


class WatchCompactedError(ServiceDiscoveryError):
    """A watch started before etcd's compacted revision: events were lost; re-read the key."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"etcd watch: revision compacted (now {compact_revision})")
        self.compact_revision = compact_revision


class EtcdClient:
    """The few etcd v3 calls discovery needs, over gRPC (a :class:`GrpcCaller` per etcd service).

    ``timeout`` bounds each unary call (the streams have no limit of their own), ``connect_timeout``
    each connection attempt to an endpoint.
    """

    def __init__(
        self, endpoints: Sequence[str], *, timeout: float = 5.0, connect_timeout: float = 1.0
    ) -> None:
        if not endpoints:
            raise ValueError("EtcdClient: give at least one 'host:port' endpoint")
        api = self._api = _api()

        def caller(service: str) -> GrpcCaller:
            info = api.service_info(service)
            return GrpcCaller(info, "etcd", endpoints, timeout=timeout, connect_timeout=connect_timeout)

        self._kv = caller("KV")
        self._lease = caller("Lease")  # its unary calls and the LeaseKeepAlive streams
        self._watch = caller("Watch")

    async def get_prefix(self, prefix: str) -> list[tuple[bytes, bytes]]:
        key = prefix.encode()
        reply = await self._kv.call("Range", self._api.RangeRequest(key=key, range_end=prefix_range_end(key)))
        return [(kv.key, kv.value) for kv in reply.kvs]

    async def get(self, key: str) -> bytes | None:
        reply = await self._kv.call("Range", self._api.RangeRequest(key=key.encode()))
        return reply.kvs[0].value if reply.kvs else None

    async def get_with_revision(self, key: str) -> tuple[bytes | None, int]:
        """The value of ``key`` (``None``: absent) and the store's revision it was read at."""
        reply = await self._kv.call("Range", self._api.RangeRequest(key=key.encode()))
        return (reply.kvs[0].value if reply.kvs else None), int(reply.header.revision)

    async def compact(self, revision: int) -> None:
        """Discard the history before ``revision`` (etcd ``Compact``); watches from older revisions fail."""
        await self._kv.call("Compact", self._api.CompactionRequest(revision=revision, physical=True))

    async def put(self, key: str, value: str, lease: int = 0) -> None:
        await self._kv.call("Put", self._api.PutRequest(key=key.encode(), value=value.encode(), lease=lease))

    async def delete(self, key: str) -> int:
        reply = await self._kv.call("DeleteRange", self._api.DeleteRangeRequest(key=key.encode()))
        return int(reply.deleted)

    async def grant(self, ttl: int) -> int:
        reply = await self._lease.call("LeaseGrant", self._api.LeaseGrantRequest(TTL=ttl))
        if reply.error:
            raise ServiceDiscoveryError(f"etcd lease grant: {reply.error}")
        return int(reply.ID)

    async def revoke(self, lease: int) -> None:
        await self._lease.call("LeaseRevoke", self._api.LeaseRevokeRequest(ID=lease))

    async def keep_alive(self, lease: int, interval: float) -> None:
        """Refresh ``lease`` every ``interval`` seconds until cancelled; returns when the lease is gone."""
        stream = await self._lease.bidi_stream("LeaseKeepAlive")
        try:
            while True:
                await stream.send(self._api.LeaseKeepAliveRequest(ID=lease))
                reply = await stream.recv()
                if reply.TTL <= 0:
                    return  # etcd answers TTL 0 for an expired or revoked lease
                await asyncio.sleep(interval)
        finally:
            stream.cancel()

    async def watch_prefix(self, prefix: str, on_events: Callable[[], None]) -> None:
        """Call ``on_events()`` for every batch of changes under ``prefix``, until cancelled."""
        key = prefix.encode()
        stream = await self._watch.bidi_stream("Watch")
        try:
            create = self._api.WatchCreateRequest(key=key, range_end=prefix_range_end(key))
            await stream.send(self._api.WatchRequest(create_request=create))
            while True:
                reply = await stream.recv()
                if reply.canceled:
                    raise ServiceDiscoveryError(f"etcd watch cancelled: {reply.cancel_reason}")
                if reply.events:
                    on_events()
        finally:
            stream.cancel()

    async def watch_key(
        self, key: str, start_revision: int, on_event: Callable[[bytes | None, int], None]
    ) -> None:
        """Watch one exact key from ``start_revision``: ``on_event(value or None if deleted,
        mod_revision)`` per change, until cancelled. Raises :class:`WatchCompactedError` when etcd has
        already discarded ``start_revision`` (the caller re-reads the key), and the transport's error
        when etcd goes away."""
        stream = await self._watch.bidi_stream("Watch")
        try:
            create = self._api.WatchCreateRequest(key=key.encode(), start_revision=start_revision)
            await stream.send(self._api.WatchRequest(create_request=create))
            while True:
                reply = await stream.recv()
                if reply.compact_revision:  # etcd cancels a watch whose start was compacted away
                    raise WatchCompactedError(int(reply.compact_revision))
                if reply.canceled:
                    raise ServiceDiscoveryError(f"etcd watch cancelled: {reply.cancel_reason}")
                for event in reply.events:
                    deleted = event.type == 1  # mvccpb.Event.DELETE
                    on_event(None if deleted else event.kv.value, int(event.kv.mod_revision))
        finally:
            stream.cancel()

    async def close(self) -> None:
        for caller in (self._kv, self._lease, self._watch):
            await caller.close()


def _lease_ttl() -> int:
    raw = os.environ.get(TTL_ENV, "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_TTL


class EtcdRegistry:
    """Kitex ``registry.Registry`` over etcd (kitex-contrib ``registry-etcd`` ``NewEtcdRegistry``).

    ``ttl`` is the lease TTL in seconds (default 60, or ``KITEX_ETCD_REGISTRY_LEASE_TTL``);
    ``retry_delay`` is how long to wait before re-registering after the lease was lost.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl: int | None = None,
        retry_delay: float = 10.0,
    ) -> None:
        self._etcd = EtcdClient(endpoints)
        self.prefix = prefix
        self.ttl = ttl if ttl is not None else _lease_ttl()
        if self.ttl < 1:
            raise ValueError("EtcdRegistry: ttl must be >= 1 second")
        self._retry_delay = retry_delay
        self._kept: dict[str, tuple[int, asyncio.Task[None]]] = {}

    def _key_value(self, info: Info) -> tuple[str, str]:
        if not info.service_name or "/" in info.service_name:
            raise ValueError(f"etcd registry: invalid service name {info.service_name!r}")
        if not info.addr:
            raise ValueError("etcd registry: the info has no address")
        return service_key(self.prefix, info.service_name, info.addr), encode_instance(
            info.addr, info.weight, info.tags
        )

    async def _put(self, key: str, value: str) -> int:
        lease = await self._etcd.grant(self.ttl)
        await self._etcd.put(key, value, lease)
        return lease

    async def register(self, info: Info) -> None:
        key, value = self._key_value(info)
        lease = await self._put(key, value)
        task = asyncio.ensure_future(self._keep(key, value, lease))
        self._kept[key] = (lease, task)

    async def _keep(self, key: str, value: str, lease: int) -> None:
        while True:
            try:
                await self._etcd.keep_alive(lease, max(self.ttl / 3, 0.2))
                _log.warning("etcd registry: lease of %s expired; registering again", key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("etcd registry: keep-alive of %s failed: %r", key, exc)
                await asyncio.sleep(min(self._retry_delay, self.ttl / 3))
                continue
            try:
                lease = await self._put(key, value)
                self._kept[key] = (lease, self._kept[key][1])
            except Exception as exc:
                _log.warning("etcd registry: re-registering %s failed: %r", key, exc)
                await asyncio.sleep(self._retry_delay)

    async def deregister(self, info: Info) -> None:
        key, _ = self._key_value(info)
        lease, task = self._kept.pop(key, (0, None))
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._etcd.delete(key)
        if lease:
            with contextlib.suppress(Exception):
                await self._etcd.revoke(lease)

    async def close(self) -> None:
        """Stop keeping leases alive (keys expire with their TTL) and close the etcd connections."""
        for _, task in self._kept.values():
            task.cancel()
        self._kept.clear()
        await self._etcd.close()


class EtcdResolver:
    """Kitex ``discovery.Resolver`` over etcd (kitex-contrib ``registry-etcd`` ``NewEtcdResolver``)."""

    name = "etcd"

    def __init__(self, endpoints: Sequence[str], *, prefix: str = DEFAULT_PREFIX, watch: bool = True) -> None:
        self._etcd = EtcdClient(endpoints)
        self.prefix = prefix
        self._watch = watch

    def target(self, endpoint: EndpointInfo) -> str:
        return endpoint.service_name

    async def resolve(self, target: str) -> Result:
        instances: list[Instance] = []
        for _, raw in await self._etcd.get_prefix(f"{self.prefix}/{target}/"):
            ins = decode_instance(raw)
            if ins is not None:
                instances.append(ins)
        if not instances:
            raise ServiceDiscoveryError(f"etcd: no instance registered for {target!r}")
        return Result.of(target, instances)

    def diff(self, cache_key: str, prev: Result, next: Result) -> tuple[Change, bool]:
        return default_diff(cache_key, prev, next)

    async def watch(self, target: str, notify: Callable[[], None]) -> None:
        """Call ``notify()`` whenever a key under the target's prefix changes (until cancelled)."""
        if not self._watch:
            await asyncio.Event().wait()
        await self._etcd.watch_prefix(f"{self.prefix}/{target}/", notify)

    async def close(self) -> None:
        await self._etcd.close()
