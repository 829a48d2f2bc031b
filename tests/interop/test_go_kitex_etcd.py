"""etcd discovery with real Go Kitex (v0.16.3 + kitex-contrib/registry-etcd v0.3.0), both ways.

A real etcd (run_etcd) on loopback. The Go server registers its pb (gRPC) address with registry-etcd
(``-etcd``); the Go client resolves with registry-etcd's resolver (``-etcd`` instead of ``-addr``).
The key and the JSON value written by Go and by kitex_grpc's EtcdRegistry are compared byte for byte.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gen.echo.v1 import echo_kitex, echo_pb2
from kitex_grpc import client, server
from kitex_grpc.discovery import WeightedRoundRobinBalancer
from kitex_grpc.discovery.etcd import EtcdClient, EtcdRegistry, EtcdResolver
from kitex_grpc.errors import ServiceDiscoveryError
from tests.discovery.helpers import run_etcd
from tests.interop.kitex_peer import KitexConventionEcho, go_server, run_go_client_args

pytestmark = [pytest.mark.interop, pytest.mark.etcd]

Req = echo_pb2.EchoRequest
PREFIX = "kitex/registry-etcd"
GO_GRPC_CASES = [
    "unary", "server_stream", "client_stream", "bidi", "biz_error", "metainfo", "deadline", "gzip",
    "plain_error", "server_stream_biz_error",
]  # fmt: skip


def registry_etcd_value(address: str) -> str:
    """What registry-etcd writes for a Kitex server without tags (Go json.Marshal of instanceInfo)."""
    return f'{{"network":"tcp","address":"{address}","weight":10,"tags":null}}'


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_etcd(tmp_path_factory.mktemp("etcd")) as endpoint:
        yield endpoint


async def wait_for_key(etcd_client: EtcdClient, key: str, seconds: float = 10.0) -> bytes:
    """Poll etcd (bounded) for ``key``: Kitex registers about 1 s after the server starts."""
    for _ in range(int(seconds / 0.05)):
        if (value := await etcd_client.get(key)) is not None:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key} did not appear in etcd within {seconds} s")


async def test_python_client_finds_go_server_and_drops_it_after_sigterm(kitex_bin: Path, etcd: str) -> None:
    etcd_client = EtcdClient([etcd])
    registry = EtcdRegistry([etcd], ttl=10)
    resolver = EtcdResolver([etcd])
    handler = CountingEcho()
    py_opts = (server.with_registry(registry), server.with_server_basic_info("echo"))
    py_svr = echo_kitex.new_server(handler, server.with_service_addr("127.0.0.1:0"), *py_opts)
    try:
        with go_server(kitex_bin, "-etcd", etcd, "-service-name", "echo") as go:
            go_key = f"{PREFIX}/echo/{go.pb}"
            go_value = await wait_for_key(etcd_client, go_key)
            await py_svr.start()
            py_key = f"{PREFIX}/echo/{py_svr.address}"
            py_value = await etcd_client.get(py_key)
            # same layout and the very same bytes from Go's registry-etcd and from ours
            assert go_value.decode() == registry_etcd_value(go.pb)
            assert py_value is not None and py_value.decode() == registry_etcd_value(py_svr.address)
            print(f"etcd from Go:     {go_key} = {go_value.decode()}")
            print(f"etcd from Python: {py_key} = {py_value.decode()}")

            cli = echo_kitex.new_client(
                "echo",
                client.with_resolver(resolver),
                client.with_load_balancer(WeightedRoundRobinBalancer(), refresh_interval=60),
                client.with_connect_timeout(5),
            )
            async with cli:
                for i in range(10):
                    assert (await cli.Unary(Req(message=f"m{i}", seq=i))).seq == i
                # smooth weighted round robin over two weight-10 instances: 5 calls reached Go
                assert handler.calls == 5
                found = {i.address for i in (await resolver.resolve("echo")).instances}
                assert found == {go.pb, py_svr.address}

                assert go.stop() == 0  # SIGTERM: Kitex deregisters before it stops serving
                assert await etcd_client.get(go_key) is None  # deleted, not left to the 60 s lease
                for _ in range(500):  # bounded (10 s): the etcd watch applies the deletion
                    if go.pb in cli.client.discovery.evicted:
                        break
                    await asyncio.sleep(0.02)
                assert go.pb in cli.client.discovery.evicted
                for i in range(6):
                    await cli.Unary(Req(message="after", seq=i))
                assert handler.calls == 11  # every call after the Go server left went to Python
        assert [i.address for i in (await resolver.resolve("echo")).instances] == [py_svr.address]
    finally:
        await py_svr.stop()
        await registry.close()
        await resolver.close()
        await etcd_client.close()
    # our server deregistered on stop; registry-etcd's resolver fails on an empty list, as ours does
    with pytest.raises(ServiceDiscoveryError):
        resolver2 = EtcdResolver([etcd])
        try:
            await resolver2.resolve("echo")
        finally:
            await resolver2.close()


async def test_go_client_finds_python_server_via_registry_etcd(kitex_bin: Path, etcd: str) -> None:
    etcd_client = EtcdClient([etcd])
    registry = EtcdRegistry([etcd], ttl=10)
    svr = echo_kitex.new_server(
        KitexConventionEcho(),
        server.with_service_addr("127.0.0.1:0"),
        server.with_registry(registry),
        server.with_server_basic_info("echo-py"),
    )
    await svr.start()
    try:
        value = await etcd_client.get(f"{PREFIX}/echo-py/{svr.address}")
        assert value is not None and value.decode() == registry_etcd_value(svr.address)
        code, results = await run_go_client_args(
            kitex_bin, "-etcd", etcd, "-service", "echo-py", "-transport", "grpc", "-case", "all"
        )
    finally:
        await svr.stop()
        await registry.close()
        await etcd_client.close()
    assert sorted(results) == sorted(GO_GRPC_CASES)
    assert {name: r["error"] for name, r in results.items() if not r["ok"]} == {}
    assert code == 0
    # the Go resolver found nothing else: no -addr was given
    assert results["unary"]["result"] == {"message": "hello", "payload_hex": "000102feff", "seq": 42}


async def test_go_client_without_registered_instances_fails(kitex_bin: Path, etcd: str) -> None:
    code, results = await run_go_client_args(
        kitex_bin, "-etcd", etcd, "-service", "nobody", "-transport", "grpc", "-case", "unary"
    )
    assert code == 1 and not results["unary"]["ok"]
    assert "no instance remains for nobody" in results["unary"]["error"]


class CountingEcho(KitexConventionEcho):
    def __init__(self) -> None:
        self.calls = 0

    async def Unary(self, request: echo_pb2.EchoRequest) -> echo_pb2.EchoReply:
        self.calls += 1
        return await super().Unary(request)
