"""The walk that runs before thriftpy2's Cython reader: sizes the body cannot back are refused first.

Without it a few bytes declaring a huge string or container cost gigabytes or tens of seconds of the
event loop, and a container of elements of an unknown type loops its declared count over nothing.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from kitex_grpc.codec import thrift as codec
from kitex_grpc.codec.thrift_bounds import body_check
from kitex_grpc.errors import ProtocolError
from tests.ttheader.shape_values import edits, mutated, shape_values, shapes
from tests.ttheader.support import ECHO_INFO, echo_thrift

serialize = codec.serializer()
deserialize = codec.deserializer(shapes.Shapes)
check_shapes = body_check(shapes.Shapes)
HUGE = 0x7FFFFFFF

# Wire types
BOOL, BYTE, DOUBLE, I16, I32, I64, STRING, STRUCT, MAP, SET, LIST = 2, 3, 4, 6, 8, 10, 11, 12, 13, 14, 15


def field(ttype: int, fid: int) -> bytes:
    return struct.pack(">bh", ttype, fid)


def list_head(etype: int, count: int) -> bytes:
    return struct.pack(">bi", etype, count)


def map_head(ktype: int, vtype: int, count: int) -> bytes:
    return struct.pack(">bbi", ktype, vtype, count)


def i32(value: int) -> bytes:
    return struct.pack(">i", value)


STOP = b"\x00"
UNKNOWN = 99  # a field id Shapes does not have

# (body of a Shapes struct, what the refusal says). The first six would take the reader gigabytes or
# tens of seconds; the ones counting 10**6 it would read "successfully", looping over nothing.
AMPLIFIERS = {
    "unknown list<i32> of 2**31-1": (field(LIST, UNKNOWN) + list_head(I32, HUGE) + STOP, "too short"),
    "unknown map<i32,i32> of 2**31-1": (field(MAP, UNKNOWN) + map_head(I32, I32, HUGE) + STOP, "too short"),
    "unknown string of 2 GiB": (field(STRING, UNKNOWN) + i32(HUGE) + STOP, "too short"),
    "known list<i64> of 2**31-1": (field(LIST, 1) + list_head(I64, HUGE) + STOP, "declared size"),
    "known list<string> of 2**31-1": (field(LIST, 2) + list_head(STRING, HUGE) + STOP, "declared size"),
    "known binary of 2 GiB": (field(STRING, 6) + i32(HUGE) + STOP, "declared size"),
    "unknown list of STOP elements": (
        field(LIST, UNKNOWN) + list_head(0, 10**6) + STOP,
        "unknown data type 0",
    ),
    "unknown list of type-16 elements": (
        field(LIST, UNKNOWN) + list_head(16, 10**6) + STOP,
        "unknown data type 16",
    ),
    "known list<i64> sent as STOP elements": (
        field(LIST, 1) + list_head(0, 10**6) + STOP,
        "unknown data type 0",
    ),
    # by_id is map<i32, list<i32>>: the reader takes string-typed keys and values as the spec's types,
    # so this value's bytes are read as a list head: 10**6 elements of type STOP.
    "map with string-typed key and value": (
        field(MAP, 5) + map_head(STRING, STRING, 1) + i32(7) + list_head(0, 10**6) + STOP,
        "unknown data type 0",
    ),
    "known map<string,string> with a value of 2 GiB": (
        field(MAP, 14) + map_head(STRING, STRING, 1) + i32(1) + b"k" + i32(HUGE) + STOP,
        "declared size",
    ),
    "negative list size": (field(LIST, 1) + list_head(I64, -1) + STOP, "negative size"),
    "negative string size": (field(STRING, 6) + i32(-1) + STOP, "negative size"),
    "unknown negative map size": (field(MAP, UNKNOWN) + map_head(I32, I32, -2) + STOP, "negative size"),
    "nesting deeper than 64": (
        field(STRUCT, 7) + (field(I64, 1) + b"\0" * 8 + field(LIST, 2) + list_head(STRUCT, 1)) * 70,
        "depth limit",
    ),
    "a struct cut short": (field(STRUCT, 7) + field(I64, 1) + b"\0" * 8, "declared size"),
}


@pytest.mark.parametrize("case", list(AMPLIFIERS))
def test_sizes_the_body_cannot_back_are_refused_before_the_reader_runs(case: str) -> None:
    body, says = AMPLIFIERS[case]
    with pytest.raises(ProtocolError, match=says):
        check_shapes(body)
    with pytest.raises(ProtocolError, match=f"cannot decode Shapes: .*{says}"):
        deserialize(body)


def nested_tree(levels: int) -> bytes:
    """A Shapes whose tree is ``levels`` Nodes deep, each the only child of the one above."""
    node = field(I64, 1) + struct.pack(">q", 7) + STOP
    for _ in range(levels - 1):
        node = field(I64, 1) + struct.pack(">q", 7) + field(LIST, 2) + list_head(STRUCT, 1) + node + STOP
    return field(STRUCT, 7) + node + STOP


def test_nesting_counts_down_from_64_and_past_it_is_refused() -> None:
    # Shapes is walked at depth 64, and each Node and each list takes one: Node k is walked at
    # 63 - 2 * (k - 1), so Node 32 at 1 and a list under it at 0, which is refused.
    shallow = nested_tree(32)
    assert check_shapes(shallow) == len(shallow)
    deep = nested_tree(33)
    with pytest.raises(ProtocolError, match="depth limit exceeded"):
        check_shapes(deep)


def test_the_echo_request_with_a_huge_unknown_list_is_refused() -> None:
    method = ECHO_INFO.methods["echo"]
    # args{1: EchoRequest{99: list<i32> of 2**31-1}}: 14 s of the reader's loop before this check
    body = field(STRUCT, 1) + field(LIST, 99) + list_head(I32, HUGE) + STOP + STOP
    with pytest.raises(ProtocolError, match="cannot decode echo_args: thrift: buffer too short"):
        method.deserialize_request(body)


def test_the_guard_still_catches_an_overrun_the_walk_let_through(monkeypatch: pytest.MonkeyPatch) -> None:
    # The walk follows thriftpy2 0.7's reader; should a later reader read differently, the guard bytes
    # after the body still stop it from returning memory from past the body.
    monkeypatch.setattr(codec, "body_check", lambda struct_type: len)
    body = b"\x0c\x00\x01\x0b\x00\x01\x00\x00\x10\x00ab"  # a 4096-byte string, 2 bytes present
    with pytest.raises(ProtocolError, match="runs past the end of the 12-byte body"):
        codec.deserializer(echo_thrift.Echo.echo_args)(body)


# -- every body the writer makes passes, and reads back; no mutation of one gets the reader past its end


@settings(max_examples=300, deadline=None)
@given(shape_values)
def test_every_written_body_passes_the_walk_and_reads_back(value: Any) -> None:
    body = serialize(value)
    assert check_shapes(body) == len(body)
    assert check_shapes(body + b"more") == len(body)  # trailing bytes: left alone
    again = deserialize(body)
    assert serialize(again) == body


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape_values, edits)
def test_a_mutated_body_is_read_or_refused_never_read_past_its_end(
    value: Any, changes: list[tuple[int, int]]
) -> None:
    data = mutated(serialize(value), changes)
    try:
        end = check_shapes(data)
    except ProtocolError:
        return
    assert end <= len(data)
    try:
        deserialize(data)
    except ProtocolError as exc:
        # what the walk passed the reader reads within the body: the guard after it never trips
        assert "-byte body" not in str(exc)
