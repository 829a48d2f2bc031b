"""Random values of every shape tests/ttheader/shapes.thrift has, for the Thrift codec's property tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from kitex_grpc import thrift

shapes: Any = thrift.load(Path(__file__).with_name("shapes.thrift"))

words = st.text(max_size=8)
small_ints = st.integers(-(2**31), 2**31 - 1)
inners = st.builds(shapes.Inner, id=small_ints, name=words)
trees = st.recursive(
    st.builds(shapes.Node, value=st.integers(-(2**63), 2**63 - 1), children=st.just([])),
    lambda kids: st.builds(shapes.Node, value=st.integers(0, 9), children=st.lists(kids, max_size=3)),
    max_leaves=12,
)
shape_values = st.builds(
    shapes.Shapes,
    numbers=st.none() | st.lists(st.integers(-(2**63), 2**63 - 1), max_size=5),
    words=st.none() | st.lists(words, max_size=5),
    groups=st.none() | st.dictionaries(words, st.lists(small_ints, max_size=3), max_size=3),
    inners=st.none() | st.lists(inners, max_size=3),
    by_id=st.none() | st.dictionaries(small_ints, st.lists(small_ints, max_size=3), max_size=3),
    blob=st.none() | st.binary(max_size=16),
    tree=st.none() | trees,
    table=st.none() | st.dictionaries(small_ints, inners, max_size=3),
    flag=st.none() | st.booleans(),
    small=st.none() | st.integers(-128, 127),
    short_int=st.none() | st.integers(-(2**15), 2**15 - 1),
    ratio=st.none() | st.floats(allow_nan=False),
    nested=st.none() | st.lists(st.lists(words, max_size=3), max_size=3),
    labels=st.none() | st.dictionaries(words, words, max_size=3),
)

# Up to four (position, byte) edits of a body; a position wraps around the body's length.
edits = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4)


def mutated(data: bytes, changes: list[tuple[int, int]]) -> bytes:
    """``data`` with each of ``changes`` (from :data:`edits`) applied."""
    out = bytearray(data)
    for position, byte in changes:
        out[position % len(out)] = byte
    return bytes(out)
