"""The compiled build's Thrift body reader and writer (codec/thrift_binary.py) against thriftpy2's.

The fast path must read and write exactly what the Cython path (the walk, then thriftpy2's Cython
protocol) reads and writes, and hand everything else to it. These tests run it in both builds: in
the plain-Python build the module runs interpreted, which is slower but reads and writes the same.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from thriftpy2.thrift import TPayload

from kitex_grpc.codec import thrift as codec
from kitex_grpc.codec import thrift_binary
from kitex_grpc.errors import ProtocolError
from tests.ttheader.shape_values import edits, mutated, shape_values, shapes
from tests.ttheader.support import echo_thrift

read_fast = thrift_binary.struct_codec(shapes.Shapes).read
read_cython = codec.cython_deserializer(shapes.Shapes)
read_public = codec.deserializer(shapes.Shapes)
write_fast = thrift_binary.write_struct
write_cython = codec.write_cython
write_public = codec.serializer()

# Wire types
BOOL, BYTE, DOUBLE, I16, I32, I64, STRING, STRUCT, MAP, SET, LIST = 2, 3, 4, 6, 8, 10, 11, 12, 13, 14, 15
STOP = b"\x00"


def field(ttype: int, fid: int) -> bytes:
    return struct.pack(">bh", ttype, fid)


def string(raw: bytes) -> bytes:
    return struct.pack(">i", len(raw)) + raw


def typed(value: Any) -> Any:
    """``value`` with the type of everything in it, and floats by their bits: equal only if the two
    readers built the same objects, down to list against tuple and str against bytes."""
    if isinstance(value, TPayload):
        return type(value).__name__, [(k, typed(v)) for k, v in vars(value).items()]
    if isinstance(value, list | tuple | set | frozenset):
        return type(value).__name__, [typed(v) for v in value]
    if isinstance(value, dict):
        return "dict", [(typed(k), typed(v)) for k, v in value.items()]
    if isinstance(value, float):
        return "float", value.hex() if not math.isnan(value) else "nan"
    return type(value).__name__, value


def outcome(read: Any, data: bytes) -> Any:
    """What a reader makes of ``data``: the typed value, or the refusal it raises."""
    try:
        return typed(read(data))
    except ProtocolError as exc:
        return "refused", str(exc)


def test_the_fast_path_runs_exactly_when_it_is_compiled() -> None:
    assert codec._FAST is thrift_binary.__file__.endswith(".so")
    assert (write_public is write_cython) is not codec._FAST


# -- bodies thriftpy2 writes


@settings(max_examples=400, deadline=None)
@given(shape_values)
def test_every_value_is_written_byte_for_byte_as_thriftpy2_writes_it(value: Any) -> None:
    data = write_cython(value)
    assert write_fast(value) == data
    assert write_public(value) == data


@settings(max_examples=400, deadline=None)
@given(shape_values)
def test_every_written_body_reads_back_as_thriftpy2_reads_it(value: Any) -> None:
    data = write_cython(value)
    expected = typed(read_cython(data))
    assert typed(read_fast(data)) == expected
    assert typed(read_fast(data + b"trailing")) == expected  # bytes after the struct are ignored
    assert typed(read_public(data)) == expected


# -- any bytes: the fast path reads what the Cython path reads, or hands the body over


def assert_read_alike(data: bytes) -> None:
    expected = outcome(read_cython, data)
    try:
        fast = typed(read_fast(data))
    except Exception:  # handed over: the public reader must then give the Cython path's outcome
        pass
    else:
        assert fast == expected
    assert outcome(read_public, data) == expected


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape_values, edits)
def test_a_mutated_body_is_read_as_thriftpy2_reads_it_or_refused_as_the_walk_refuses_it(
    value: Any, changes: list[tuple[int, int]]
) -> None:
    assert_read_alike(mutated(write_cython(value), changes))


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=48))
def test_any_bytes_are_read_alike(data: bytes) -> None:
    assert_read_alike(data)


def i32(value: int) -> bytes:
    return struct.pack(">i", value)


def body(*parts: bytes) -> bytes:
    return b"".join(parts)


# Bodies thriftpy2's writer never makes but its reader takes, each its own way.
QUIRKS = {
    "a string that is not UTF-8 stays bytes": body(
        field(LIST, 2), bytes([STRING]), i32(1), string(b"\xff\xfe"), STOP
    ),
    "a string field sent as wire type 18": body(field(18, 6), string(b"blob"), STOP),
    "a set comes back as a list; a list sent as a set is skipped": body(
        field(SET, 4),
        bytes([STRUCT]),
        i32(1),
        field(I32, 1),
        i32(5),
        STOP,
        field(SET, 1),
        bytes([I64]),
        i32(1),
        struct.pack(">q", 9),
        STOP,
    ),
    "a field of the wrong type is skipped": body(field(I32, 1), i32(5), STOP),
    "an unknown field is skipped": body(
        field(MAP, 99), bytes([I32, STRING]), i32(1), i32(1), string(b"x"), field(BOOL, 9), b"\x02", STOP
    ),
    "a list of the wrong element type comes back empty": body(
        field(LIST, 1), bytes([I32]), i32(2), i32(1), i32(2), STOP
    ),
    "a map key sent as a string is read as the spec's type": body(
        field(MAP, 5), bytes([STRING, LIST]), i32(1), i32(7), bytes([I32]), i32(0), STOP
    ),
    "a field sent twice: the last wins": body(field(BYTE, 10), b"\x01", field(BYTE, 10), b"\xfe", STOP),
    "a nonzero bool byte is True": body(field(BOOL, 9), b"\x07", STOP),
    "a double": body(field(DOUBLE, 12), struct.pack(">d", -0.0), STOP),
}


@pytest.mark.parametrize("case", list(QUIRKS))
def test_the_reader_quirks_of_thriftpy2_are_kept(case: str) -> None:
    data = QUIRKS[case]
    expected = outcome(read_cython, data)
    assert expected[0] != "refused"
    assert typed(read_fast(data)) == expected  # read by the fast path itself, not handed over


def test_the_quirks_read_as_described() -> None:
    assert read_fast(QUIRKS["a string that is not UTF-8 stays bytes"]).words == [b"\xff\xfe"]
    assert read_fast(QUIRKS["a string field sent as wire type 18"]).blob == b"blob"
    both = read_fast(QUIRKS["a set comes back as a list; a list sent as a set is skipped"])
    assert (both.inners, both.numbers) == ([shapes.Inner(id=5)], None)
    assert read_fast(QUIRKS["a field of the wrong type is skipped"]).numbers is None
    assert read_fast(QUIRKS["an unknown field is skipped"]).flag is True
    assert read_fast(QUIRKS["a list of the wrong element type comes back empty"]).numbers == []
    assert read_fast(QUIRKS["a map key sent as a string is read as the spec's type"]).by_id == {7: []}
    assert read_fast(QUIRKS["a field sent twice: the last wins"]).small == -2


def tree_body(levels: int) -> bytes:
    """A Shapes whose tree is ``levels`` Nodes deep, each the only child of the one above."""
    node = field(I64, 1) + struct.pack(">q", 7) + STOP
    for _ in range(levels - 1):
        node = body(field(I64, 1), struct.pack(">q", 7), field(LIST, 2), bytes([STRUCT]), i32(1), node, STOP)
    return field(STRUCT, 7) + node + STOP


def test_nesting_is_read_to_the_walks_limit_and_refused_past_it() -> None:
    shallow = tree_body(32)
    tree = read_fast(shallow).tree
    for _ in range(31):
        tree = tree.children[0]
    assert tree.children is None and tree.value == 7
    deep = tree_body(33)
    with pytest.raises(thrift_binary.HandOverError):
        read_fast(deep)
    with pytest.raises(ProtocolError, match="cannot decode Shapes: thrift: depth limit exceeded"):
        read_public(deep)


def test_an_idl_exception_reads_as_its_class() -> None:
    result_type = echo_thrift.Echo.fail_result
    data = write_cython(result_type(err=echo_thrift.EchoError(code=7, message="no")))
    result = codec.deserializer(result_type)(data)
    assert type(result.err) is echo_thrift.EchoError
    assert (result.err.code, result.err.message, result.err.args) == (7, "no", ())
    assert typed(thrift_binary.struct_codec(result_type).read(data)) == typed(
        codec.cython_deserializer(result_type)(data)
    )


# -- values the fast writer hands over: the Cython writer decides, bytes or error


HANDED_OVER = {
    "a bytearray for binary": shapes.Shapes(blob=bytearray(b"ab")),
    "a str for binary": shapes.Shapes(blob="é"),
    "an int for a double": shapes.Shapes(ratio=3),
    "a tuple for a list": shapes.Shapes(numbers=(1, 2)),
    "a subclass of the field's struct": shapes.Shapes(tree=type("MyNode", (shapes.Node,), {})(value=1)),
    "a float for an i16 (thriftpy2 truncates it)": shapes.Shapes(short_int=1.5),
    "a dict subclass for a map": shapes.Shapes(labels=type("Labels", (dict,), {})(a="b")),
}


def _outcome(write: Any, value: TPayload) -> bytes | str:
    """The bytes written, or the error raised (its type and message): the thriftpy2 release decides
    which (0.5 and 0.6 refuse a bytearray for binary, 0.7 writes it)."""
    try:
        return bytes(write(value))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("case", list(HANDED_OVER))
def test_unusual_values_are_written_as_thriftpy2_writes_them(case: str) -> None:
    value = HANDED_OVER[case]
    assert _outcome(write_public, value) == _outcome(write_cython, value)


WRONG = {
    "an i32 out of range": shapes.Inner(id=2**31),
    "a byte out of range": shapes.Shapes(small=128),
    "a string for an i64": shapes.Shapes(numbers=["1"]),
    "an int for a string": shapes.Inner(name=5),
    "a string that cannot be UTF-8": shapes.Inner(name="\ud800"),
}


@pytest.mark.parametrize("case", list(WRONG))
def test_values_thriftpy2_cannot_write_raise_its_error(case: str) -> None:
    value = WRONG[case]
    with pytest.raises(Exception) as cython:
        write_cython(value)
    with pytest.raises(type(cython.value)) as public:
        write_public(value)
    assert str(public.value) == str(cython.value)
    # not raised while handling the fast path's error: only thriftpy2's own is chained
    assert repr(public.value.__context__) == repr(cython.value.__context__)


def test_a_codec_is_published_only_when_whole() -> None:
    # The codecs are looked up without a lock: another thread must never find one whose fields are
    # still being added (it would write only STOP, or skip every field). A nested struct's codec is
    # made during its parent's, and published with it.
    seen_while_making: list[bool] = []

    class SpySpec(dict[int, tuple[Any, ...]]):
        def items(self) -> Any:
            seen_while_making.append(Outer in thrift_binary._codecs or Inner in thrift_binary._codecs)
            return super().items()

    Inner = type("Inner", (shapes.Inner,), {"thrift_spec": SpySpec(shapes.Inner.thrift_spec)})
    Outer = type("Outer", (shapes.Inner,), {"thrift_spec": SpySpec({1: (STRUCT, "child", Inner, False)})})
    codec = thrift_binary.struct_codec(Outer)
    assert seen_while_making == [False, False]  # Outer's spec, then Inner's
    assert thrift_binary._codecs[Outer] is codec and Inner in thrift_binary._codecs
    value = Outer()
    value.child = Inner(id=3, name="x")
    inner = body(field(I32, 1), i32(3), field(STRING, 2), string(b"x"), STOP)
    assert thrift_binary.write_struct(value) == body(field(STRUCT, 1), inner, STOP)
