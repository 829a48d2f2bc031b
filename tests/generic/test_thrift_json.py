"""JSON <-> Thrift conversion with Kitex's rules (KITEX-WIRE-2.md §13.2), checked on the bytes."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from kitex_grpc.codec.thrift import write_cython
from kitex_grpc.generic import ConvertError, IDLError, json_thrift, map_thrift
from kitex_grpc.generic.thrift_idl import load_idl, optional_fields
from kitex_grpc.generic.thrift_json import (
    JSON_OPTIONS,
    ThriftConvOptions,
    struct_from_json,
    struct_to_json,
)

IDL = Path(__file__).parent / "idl" / "rich.thrift"


@pytest.fixture(scope="module")
def rich() -> Any:
    return load_idl(IDL).module


def i64_field(fid: int, value: int) -> bytes:
    return struct.pack(">bhq", 10, fid, value)


def test_optional_fields_are_read_from_the_idl(rich: Any) -> None:
    assert optional_fields(rich.Inner) == {2}
    assert optional_fields(rich.RichRequest) == {11, 14}
    assert optional_fields(rich.base.Base) == {2}  # the included file is scanned too


def test_absent_fields_are_written_as_kitex_writes_them(rich: Any) -> None:
    # required id given; optional note omitted; default-requiredness ratio written as its zero value
    # (0.0, not the IDL default 1.5: Kitex's writer does not use IDL defaults).
    body = write_cython(struct_from_json(rich.Inner, {"id": 1}, JSON_OPTIONS))
    assert body == i64_field(1, 1) + struct.pack(">bhd", 4, 3, 0.0) + b"\x00"
    # null is the same as absent
    assert write_cython(struct_from_json(rich.Inner, {"id": 1, "note": None}, JSON_OPTIONS)) == body


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (9223372036854775807, 2**63 - 1),
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
        (-9223372036854775808, -(2**63)),
        (12.0, 12),
    ],
)
def test_i64_as_number_or_decimal_string_exactly(rich: Any, given: Any, expected: int) -> None:
    obj = struct_from_json(rich.Inner, {"id": given}, JSON_OPTIONS)
    assert write_cython(obj).startswith(i64_field(1, expected))
    # and back: a JSON number, exact above 2^53; or a string with i64_as_string
    assert struct_to_json(obj, JSON_OPTIONS)["id"] == expected
    assert struct_to_json(obj, ThriftConvOptions(i64_as_string=True))["id"] == str(expected)


@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        ({"big": 2**63}, "big", "9223372036854775808 is out of range for i64"),
        ({"big": 1, "small": 2**31}, "small", "2147483648 is out of range for i32"),
        ({"big": 1, "b": 128}, "b", "128 is out of range for i8"),
        ({"big": "12x"}, "big", "expected i64, got a string '12x'"),
        ({"big": True}, "big", "expected i64, got a bool"),
        ({"big": 1, "items": [{"id": 1}, {"id": 2, "nope": 1}]}, "items[1].nope", "unknown field of Inner"),
        ({"big": 1, "extra": 1}, "extra", "unknown field of RichRequest"),
        ({"big": 1, "data": "not base64!"}, "data", "expected standard (padded) base64 for binary"),
        ({"big": 1, "color": "BLUE"}, "color", "'BLUE' is not a value of enum Color"),
        ({"big": 1, "by_id": {"x": {"id": 1}}}, "by_id['x']", "map key 'x' is not a decimal i64"),
        ({"big": 1, "flags": {"yes": 1}}, "flags['yes']", "map key 'yes' is not true or false"),
        ({"big": 1, "tags": "a"}, "tags", "expected an array for set, got a string"),
        ({"big": 1, "ok": "true"}, "ok", "expected bool, got a string"),
        ({"big": 1, "d": "abc"}, "d", "expected double, got a string 'abc'"),
        ({"big": 1, "nested": {"k": [{"1": 5}]}}, "nested['k'][0]['1']", "expected string, got a number"),
        ({"big": 1, "items": [None]}, "items[0]", "null is not a Inner"),
    ],
)
def test_bad_values_name_their_path(rich: Any, value: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConvertError) as err:
        struct_from_json(rich.RichRequest, value, JSON_OPTIONS)
    assert (err.value.path, err.value.message) == (path, message)
    assert str(err.value) == f"{path}: {message}"


def test_unknown_fields_can_be_skipped_as_kitex_does(rich: Any) -> None:
    lax = ThriftConvOptions(allow_unknown_fields=True)
    obj = struct_from_json(rich.Inner, {"id": 3, "whatever": [1]}, lax)
    assert write_cython(obj).startswith(i64_field(1, 3))


def test_containers_enums_binary_and_map_keys(rich: Any) -> None:
    value = {
        "big": 1,
        "data": "AAH/",
        "tags": ["b", "a", "b"],
        "by_id": {"-5": {"id": 7}},
        "flags": {"true": 1, "false": 0},
        "color": "GREEN",
        "nested": {"k": [{"1": "one"}]},
        "base": {"log_id": "L"},
    }
    obj = struct_from_json(rich.RichRequest, value, JSON_OPTIONS)
    assert (obj.data, obj.color, obj.by_id[-5].id, obj.flags) == (b"\x00\x01\xff", 2, 7, {True: 1, False: 0})
    body = write_cython(obj)
    # the set is written in the array's order with its duplicate, as Kitex writes it
    assert struct.pack(">bhbi", 14, 7, 11, 3) + b"\x00\x00\x00\x01b\x00\x00\x00\x01a\x00\x00\x00\x01b" in body
    out = struct_to_json(obj, JSON_OPTIONS)
    assert out["data"] == "AAH/" and out["color"] == 2 and out["by_id"] == {"-5": {"id": 7, "ratio": 0.0}}
    assert out["flags"] == {"true": 1, "false": 0} and out["nested"] == {"k": [{"1": "one"}]}
    assert "inner" not in out and out["base"] == {"log_id": "L"}


def test_a_reply_missing_a_required_field_is_an_error(rich: Any) -> None:
    inner = rich.Inner()
    inner.id = None
    with pytest.raises(ConvertError) as err:
        struct_to_json(inner, JSON_OPTIONS, "success")
    assert str(err.value) == "success.id: required field missing in Inner"


def test_json_generic_from_idl_text_with_include_dirs() -> None:
    text = 'include "base.thrift"\nservice S { base.Base Get(1: base.Base b) }\n'
    g = json_thrift(text, include_dirs=[IDL.parent])
    mi = g.method("Get")
    args = g.encode_request(mi, '{"log_id": "x", "extra": {"a": "b"}}')
    assert (args.b.log_id, args.b.extra) == ("x", {"a": "b"})


def test_map_generic_takes_python_values() -> None:
    g = map_thrift(IDL)
    mi = g.method("Echo")
    args = g.encode_request(mi, {"big": 2**62, "data": b"\x00\xff", "by_id": {4: {"id": 4}}})
    assert (args.req.big, args.req.data, args.req.by_id[4].id) == (2**62, b"\x00\xff", 4)
    result = g.decode_reply(mi, args.req)
    assert result["data"] == b"\x00\xff" and result["by_id"] == {4: {"id": 4, "ratio": 0.0}}


def test_string_argument_may_be_raw_text_as_in_kitex() -> None:
    g = json_thrift(IDL)
    mi = g.method("Name")
    assert g.encode_request(mi, "plain words").who == "plain words"
    assert g.encode_request(mi, '"quoted"').who == "quoted"
    with pytest.raises(ConvertError, match="malformed JSON"):
        g.encode_request(g.method("Echo"), "{not json")


def test_bad_idl_and_unknown_method_are_clear() -> None:
    with pytest.raises(IDLError, match="cannot load the Thrift IDL"):
        json_thrift("service S { x y z }\n")
    with pytest.raises(IDLError, match="no such IDL file"):
        json_thrift("/nonexistent/x.thrift")
    with pytest.raises(ConvertError, match="no method 'Nope' in service Rich"):
        json_thrift(IDL).method("Nope")


def test_kitex_forms_behind_options() -> None:
    kitex_like = json_thrift(IDL, raw_string_reply=True, allow_unknown_fields=True)
    ours = json_thrift(IDL)
    name = ours.method("Name")
    assert ours.decode_reply(name, 'say "hi"') == '"say \\"hi\\""'
    assert kitex_like.decode_reply(kitex_like.method("Name"), 'say "hi"') == 'say "hi"'
    args = kitex_like.encode_request(kitex_like.method("Echo"), '{"big": 1, "unknown": 2}')
    assert args.req.big == 1
