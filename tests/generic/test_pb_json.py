"""JSON <-> protobuf with Kitex's JSONPbGeneric rules (KITEX-WIRE-2.md §13.5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from kitex_grpc import protobuf
from kitex_grpc.generic import ConvertError, json_pb
from kitex_grpc.generic.pb_json import PbConvOptions, message_from_json, message_to_json

PROTO = Path(__file__).parent / "idl" / "rich.proto"


@pytest.fixture(scope="module")
def mod() -> Any:
    return protobuf.load(PROTO, include=[PROTO.parent])


def test_kitex_rules_on_output(mod: Any) -> None:
    msg = mod.Rich(user_name="u", ids=[1, 2**63 - 1], color=1)
    msg.by_id[3].big = -(2**63)
    msg.by_id[3].ubig = 2**64 - 1
    msg.by_id[3].data = b"\x00\x01"
    out = message_to_json(msg)
    # JSON names, 64-bit integers as numbers (exact), enums as numbers, bytes as base64, no defaults
    assert out == {
        "userName": "u",
        "ids": [1, 2**63 - 1],
        "byId": {"3": {"big": -(2**63), "ubig": 2**64 - 1, "data": "AAE="}},
        "color": 1,
    }
    assert message_to_json(msg, PbConvOptions(int64_as_string=True))["ids"] == ["1", str(2**63 - 1)]


def test_input_forms_give_the_same_bytes(mod: Any) -> None:
    a = message_from_json(mod.Rich, {"userName": "u", "ids": [5, "9223372036854775807"], "color": "RED"})
    b = message_from_json(mod.Rich, {"user_name": "u", "ids": ["5", 9223372036854775807], "color": 1})
    assert a.SerializeToString() == b.SerializeToString()
    assert a == mod.Rich(user_name="u", ids=[5, 2**63 - 1], color=1)


@pytest.mark.parametrize(
    ("value", "path", "start"),
    [
        ({"nope": 1}, "nope", "unknown field of rich.v1.Rich"),
        ({"inners": [{}, {"nope": 1}]}, "inners[1].nope", "unknown field of rich.v1.Inner"),
        ({"byId": {"1": {"nope": 1}}}, "byId['1'].nope", "unknown field of rich.v1.Inner"),
        ({"inner": {"big": 2**63}}, "inner.big", "Value out of range"),
        ({"small": 2**31}, "small", "Value out of range"),
        ({"d": "abc"}, "d", "Couldn't parse float"),
        ({"color": "BLUE"}, "color", "Invalid enum value BLUE"),
    ],
)
def test_bad_input_names_the_field(mod: Any, value: dict[str, Any], path: str, start: str) -> None:
    with pytest.raises(ConvertError) as err:
        message_from_json(mod.Rich, value)
    assert err.value.path == path and err.value.message.startswith(start), str(err.value)


def test_unknown_keys_may_be_skipped(mod: Any) -> None:
    msg = message_from_json(mod.Rich, {"userName": "x", "nope": 1}, PbConvOptions(allow_unknown_fields=True))
    assert msg == mod.Rich(user_name="x")


def test_descriptor_sources_agree(mod: Any, tmp_path: Path) -> None:
    from kitex_grpc.codegen.generator import compile_descriptor_set

    fds, _ = compile_descriptor_set([PROTO], [PROTO.parent])
    assert isinstance(fds, descriptor_pb2.FileDescriptorSet)
    path = tmp_path / "rich.pb"
    path.write_bytes(fds.SerializeToString())
    for source in (PROTO, fds, fds.SerializeToString(), str(path), mod):
        g = json_pb(source, include=[PROTO.parent]) if source == PROTO else json_pb(source)
        assert g.service_info.full_name == "rich.v1.RichService"
        mi = g.method("Get")
        reply = g.decode_reply(mi, g.encode_request(mi, '{"userName": "x", "ids": [1]}'))
        assert json.loads(reply) == {"userName": "x", "ids": [1]}
