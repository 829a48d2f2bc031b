"""metainfo semantics: scoping, hop rules, and the gRPC and TTHeader wire forms."""

from __future__ import annotations

import asyncio

import pytest

from kitex_grpc import metainfo


def test_values_are_scoped_to_the_with_block() -> None:
    assert metainfo.get_value("k") is None
    with metainfo.with_value("k", "v"), metainfo.with_persistent_value("p", "q"):
        assert metainfo.get_value("k") == "v" and metainfo.get_persistent_value("p") == "q"
        with metainfo.del_value("k"):
            assert metainfo.get_value("k") is None
        assert metainfo.get_value("k") == "v"
    assert metainfo.get_all_values() == {} and metainfo.get_all_persistent_values() == {}


def test_invalid_values_are_refused() -> None:
    with pytest.raises(ValueError):
        metainfo.with_value("", "v")
    with pytest.raises(TypeError):
        metainfo.with_value("k", 1)  # type: ignore[arg-type]


async def test_tasks_do_not_see_each_others_values() -> None:
    async def set_and_read(value: str) -> str | None:
        with metainfo.with_value("k", value):
            await asyncio.sleep(0)
            return metainfo.get_value("k")

    assert await asyncio.gather(set_and_read("a"), set_and_read("b")) == ["a", "b"]


def test_http2_form_lowercases_and_dashes_then_uppercases_on_receipt() -> None:
    with metainfo.with_value("temp_key", "t"), metainfo.with_persistent_value("LogID", "42"):
        headers = metainfo.to_http2_headers()
    assert headers == [("rpc-transit-temp-key", "t"), ("rpc-persist-logid", "42")]
    transient, persistent = metainfo.from_http2_headers([*headers, ("x-other", "o"), ("rpc-transit-", "x")])
    assert (transient, persistent) == ({"TEMP_KEY": "t"}, {"LOGID": "42"})


def test_server_side_received_values_are_stale_transient() -> None:
    """Received transient values are readable, forwarded over gRPC (legacy mode), not over TTHeader."""

    def served() -> tuple[str | None, list[tuple[str, str]], dict[str, str]]:
        metainfo.begin_server_call({"UP": "u"}, {"P": "p"})
        with metainfo.with_value("mine", "m"):
            return metainfo.get_value("UP"), metainfo.to_http2_headers(), metainfo.to_ttheader_strinfo()

    import contextvars

    value, http2, ttheader = contextvars.copy_context().run(served)
    assert value == "u"
    assert ("rpc-transit-up", "u") in http2 and ("rpc-transit-mine", "m") in http2
    assert ttheader == {"RPC_TRANSIT_mine": "m", "RPC_PERSIST_P": "p"}


def test_ttheader_form_preserves_case_and_reads_upstream_prefix() -> None:
    info = {"RPC_TRANSIT_Temp": "t", "RPC_PERSIST_LogID": "1", "RPC_TRANSIT_UPSTREAM_old": "o", "other": "x"}
    assert metainfo.from_ttheader_strinfo(info) == ({"Temp": "t", "old": "o"}, {"LogID": "1"})


def test_backward_values_need_opt_in_and_a_served_call() -> None:
    assert metainfo.send_backward_value("k", "v") is False
    with metainfo.with_backward_values() as holder:
        receiver = metainfo.backward_receiver()
        assert receiver is holder
        holder.received["k"] = "v"
        assert metainfo.recv_backward_value("k") == "v"
        assert metainfo.recv_all_backward_values() == {"k": "v"}
    assert metainfo.backward_receiver() is None
