"""Thrift ``required`` fields are checked on encode and on decode (issue 23, finding 12).

``required.thrift`` has required fields at the top of the request and reply, inside a nested struct,
inside list and map elements, and in an IDL exception; ``required_loose.thrift`` is the same IDL
without the keyword, for a peer that does not check. Over TTHeader and Framed:

- encode: a client never sends a struct with an unset required field (ProtocolError naming the field,
  before any byte); a server whose handler returns one answers with an EXCEPTION instead;
- decode: a server refuses such a request with an EXCEPTION PROTOCOL_ERROR naming the field (tagged
  ``crrst``, then the connection closes, as Kitex does for a body it cannot decode), and a client
  refuses such a reply with a ProtocolError naming it.

Real sockets on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import kitex_grpc
from kitex_grpc import client, server, thrift
from kitex_grpc.codec.thrift_required import RequiredFieldError, required_check
from kitex_grpc.errors import ProtocolError, TApplicationType
from kitex_grpc.transport.ttheader.errors import ApplicationError
from tests.support import NOT_ABOUT_DIALING

HERE = Path(__file__).parent
strict: Any = thrift.load(HERE / "required.thrift", "checked_thrift")
loose: Any = thrift.load(HERE / "required_loose.thrift", "checked_loose_thrift")
TRANSPORTS = ["ttheader", "framed"]


class Handler:
    """Answers ``req.r_string`` as the reply's; ``no-reply-field`` leaves it out, ``fail`` raises the
    IDL exception without its required code."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.calls = 0

    async def call(self, req: Any) -> Any:
        self.calls += 1
        if req.r_string == "no-reply-field":
            return self.module.Response(note="r_string left out")
        if req.r_string == "fail":
            raise self.module.Failure(message="no code")
        return self.module.Response(r_string=req.r_string)


@asynccontextmanager
async def serve(module: Any) -> AsyncIterator[tuple[kitex_grpc.Server, Handler]]:
    handler = Handler(module)
    svr = kitex_grpc.new_server(
        server.with_service_addr("127.0.0.1:0"), server.with_transport_protocol("ttheader")
    )
    svr.register_service(thrift.service_info(module.Checked), handler)
    await svr.start()
    try:
        yield svr, handler
    finally:
        await svr.stop()


@asynccontextmanager
async def connect(module: Any, address: str, transport: str) -> AsyncIterator[Any]:
    cli = thrift.new_client(
        module.Checked,
        "checked",
        client.with_host_ports(address),
        client.with_transport_protocol(transport),
        NOT_ABOUT_DIALING,
    )
    try:
        yield cli
    finally:
        await cli.close()


def test_only_idls_with_required_fields_pay_for_the_check() -> None:
    assert required_check(loose.Request) is None and required_check(loose.Checked.call_result) is None
    assert required_check(strict.Checked.call_args) is not None
    echo: Any = thrift.load(HERE.parent.parent / "idl" / "echo.thrift")
    assert required_check(echo.Echo.echo_args) is None


@pytest.mark.parametrize(
    ("request_value", "field", "struct"),
    [
        (strict.Request(), "r_string", "Request"),
        (strict.Request(r_string="a", inner=strict.Inner(opt=1)), "r_string", "Inner"),
        (
            strict.Request(r_string="a", inners=[strict.Inner(r_string="x"), strict.Inner()]),
            "r_string",
            "Inner",
        ),
        (strict.Request(r_string="a", by_name={"k": strict.Inner()}), "r_string", "Inner"),
    ],
    ids=["top", "nested", "list-element", "map-value"],
)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_client_refuses_to_send_an_unset_required_field(
    transport: str, request_value: Any, field: str, struct: str
) -> None:
    async with serve(strict) as (svr, handler), connect(strict, svr.address, transport) as cli:
        with pytest.raises(RequiredFieldError) as info:
            await cli.call(request_value)
        assert isinstance(info.value, ProtocolError)
        assert (info.value.field, info.value.struct) == (field, struct)
        assert str(info.value) == f"protocol error: required field {field} of {struct} is not set"
        assert handler.calls == 0  # nothing was sent
        # Set, the same call goes through on the same client.
        assert (await cli.call(strict.Request(r_string="ok"))).r_string == "ok"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_server_refuses_a_request_without_a_required_field(transport: str) -> None:
    async with serve(strict) as (svr, handler):
        async with connect(loose, svr.address, transport) as cli:
            for sent in (loose.Request(), loose.Request(r_string="a", inners=[loose.Inner(opt=2)])):
                with pytest.raises(ApplicationError) as info:
                    await cli.call(sent)
                assert info.value.type_id == TApplicationType.PROTOCOL_ERROR
                assert "required field r_string of" in str(info.value) and "is not set" in str(info.value)
            assert handler.calls == 0  # refused before the handler
            assert (await cli.call(loose.Request(r_string="ok"))).r_string == "ok"  # a new connection
        assert handler.calls == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_client_refuses_a_reply_without_a_required_field(transport: str) -> None:
    async with serve(loose) as (svr, _), connect(strict, svr.address, transport) as cli:
        with pytest.raises(RequiredFieldError) as info:
            await cli.call(strict.Request(r_string="no-reply-field"))
        assert (info.value.field, info.value.struct) == ("r_string", "Response")
        with pytest.raises(RequiredFieldError) as failure:  # in the IDL exception of the reply
            await cli.call(strict.Request(r_string="fail"))
        assert (failure.value.field, failure.value.struct) == ("code", "Failure")
        assert (await cli.call(strict.Request(r_string="ok"))).r_string == "ok"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_server_never_sends_a_reply_without_a_required_field(transport: str) -> None:
    async with serve(strict) as (svr, _), connect(loose, svr.address, transport) as cli:
        with pytest.raises(ApplicationError) as info:
            await cli.call(loose.Request(r_string="no-reply-field"))
        assert info.value.type_id == TApplicationType.PROTOCOL_ERROR
        assert "required field r_string of Response is not set" in str(info.value)
        assert (await cli.call(loose.Request(r_string="ok"))).r_string == "ok"
