"""Our JSON mapping against Kitex's own converters, run by the Go program interop/cmd/genericjson.

Thrift: the Args struct body Kitex's ``JSONThriftGeneric`` writes for a request JSON equals ours up to
the order of a struct's fields (Kitex writes them in Go map order, a different order each run), and
the JSON Kitex reads from a Result body equals ours. Protobuf: ``JSONPbGeneric``'s message equals
ours, and so does its JSON of a reply.
"""

from __future__ import annotations

import json
import struct
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from kitex_grpc.codec.thrift import write_cython
from kitex_grpc.generic import json_pb, json_thrift
from tests.generic.support import IDL_DIR, RICH_IDL, RICH_PROTO
from tests.gobuild import ROOT, make_go_target

pytestmark = pytest.mark.interop

BIN = ROOT / ".cache" / "interop" / "bin" / "genericjson"


class Kitex:
    """The genericjson process: one JSON case per line in, one result per line out."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def ask(self, **case: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(case) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "genericjson exited"
        answer: dict[str, Any] = json.loads(line)
        return answer


@pytest.fixture(scope="module")
def kitex() -> Iterator[Kitex]:
    make_go_target(str(BIN), "interop/cmd/genericjson")
    proc = subprocess.Popen([str(BIN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        yield Kitex(proc)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


# -- a canonical form of a Thrift binary struct body: fields sorted by id ------------------------------

_FIXED = {2: 1, 3: 1, 4: 8, 6: 2, 8: 4, 10: 8}


def _value(data: bytes, pos: int, ttype: int) -> tuple[bytes, int]:
    if ttype in _FIXED:
        end = pos + _FIXED[ttype]
        return data[pos:end], end
    if ttype == 11:
        (n,) = struct.unpack_from(">i", data, pos)
        return data[pos : pos + 4 + n], pos + 4 + n
    if ttype == 12:
        return _struct(data, pos)
    if ttype in (14, 15):
        et, n = struct.unpack_from(">bi", data, pos)
        out, pos = [data[pos : pos + 5]], pos + 5
        for _ in range(n):
            item, pos = _value(data, pos, et)
            out.append(item)
        return b"".join(out), pos
    if ttype == 13:
        kt, vt, n = struct.unpack_from(">bbi", data, pos)
        head, pos = data[pos : pos + 6], pos + 6
        entries = []
        for _ in range(n):
            key, pos = _value(data, pos, kt)
            value, pos = _value(data, pos, vt)
            entries.append(key + value)
        return head + b"".join(sorted(entries)), pos
    raise AssertionError(f"type {ttype}")


def _struct(data: bytes, pos: int) -> tuple[bytes, int]:
    fields = []
    while data[pos] != 0:
        ttype, fid = struct.unpack_from(">bh", data, pos)
        value, end = _value(data, pos + 3, ttype)
        fields.append((fid, data[pos : pos + 3] + value))
        pos = end
    return b"".join(f for _, f in sorted(fields)) + b"\x00", pos + 1


def canonical(body: bytes) -> bytes:
    out, end = _struct(body, 0)
    assert end == len(body)
    return out


THRIFT_REQUESTS = [
    (
        "Echo",
        {
            "big": 9223372036854775807,
            "small": -2147483648,
            "tiny": 32767,
            "b": -128,
            "data": "AAH/",
            "items": [{"id": 1, "note": "n"}, {"id": -1, "ratio": 2.5}],
            "tags": ["b", "a", "b"],
            "by_id": {"-5": {"id": 7}, "9007199254740993": {"id": 9007199254740993}},
            "flags": {"true": 1, "false": 0},
            "color": 2,
            "inner": {"id": 3},
            "d": -1.25e-300,
            "ok": True,
            "base": {"log_id": "L", "extra": {"k": "v"}},
            "nested": {"k": [{"1": "one", "-2": "minus"}], "e": []},
        },
    ),
    ("Echo", {"big": "-9223372036854775808", "small": "12", "d": 1.7976931348623157e308}),
    ("Echo", {}),
    ("Echo", {"big": 1, "inner": {}, "base": {}}),
    ("Name", "plain words"),
    ("Name", '"quoted ünïcode"'),
    ("Ping", "42"),
]


@pytest.mark.parametrize(("method", "request_json"), THRIFT_REQUESTS)
def test_thrift_request_bytes_match_kitex(kitex: Kitex, method: str, request_json: Any) -> None:
    text = request_json if isinstance(request_json, str) else json.dumps(request_json)
    answer = kitex.ask(
        kind="thrift", idl=str(RICH_IDL), include=[str(IDL_DIR)], method=method, op="write", json=text
    )
    assert "hex" in answer, answer
    g = json_thrift(RICH_IDL)
    ours = write_cython(g.encode_request(g.method(method), text))
    assert canonical(ours) == canonical(bytes.fromhex(answer["hex"]))


@pytest.mark.parametrize(("method", "request_json"), [c for c in THRIFT_REQUESTS if c[0] == "Echo"])
def test_thrift_reply_json_matches_kitex(kitex: Kitex, method: str, request_json: Any) -> None:
    g = json_thrift(RICH_IDL)
    mi = g.method(method)
    value = g.encode_request(mi, json.dumps(request_json)).req  # the same struct as a reply's success
    result = mi.response_type(success=value)
    body = write_cython(result)
    answer = kitex.ask(
        kind="thrift", idl=str(RICH_IDL), include=[str(IDL_DIR)], method=method, op="read", hex=body.hex()
    )
    assert "json" in answer, answer
    ours = g.decode_reply(mi, mi.deserialize_response(body).success)
    assert json.loads(ours) == json.loads(answer["json"])


PB_REQUESTS = [
    {"userName": "u", "ids": [1, 9223372036854775807, -9223372036854775808], "color": 1},
    {"byId": {"3": {"big": -5, "ubig": 9223372036854775807, "data": "AAE=", "sbig": -2}}, "d": 0.5},
    {"inners": [{"big": 1}, {}], "inner": {"data": ""}, "small": -7},
    {},
]


@pytest.mark.parametrize("request_json", PB_REQUESTS)
def test_pb_request_and_reply_match_kitex(kitex: Kitex, request_json: dict[str, Any]) -> None:
    g = json_pb(RICH_PROTO, include=[IDL_DIR])
    mi = g.method("Get")
    text = json.dumps(request_json)
    answer = kitex.ask(
        kind="pb", idl=str(RICH_PROTO), include=[str(IDL_DIR)], method="Get", op="write", json=text
    )
    assert "hex" in answer, answer
    ours = g.encode_request(mi, text)
    assert mi.request_type.FromString(bytes.fromhex(answer["hex"])) == ours
    body = ours.SerializeToString()
    answer = kitex.ask(
        kind="pb", idl=str(RICH_PROTO), include=[str(IDL_DIR)], method="Get", op="read", hex=body.hex()
    )
    assert "json" in answer, answer
    assert json.loads(g.decode_reply(mi, mi.response_type.FromString(body))) == json.loads(answer["json"])


def test_the_canonical_form_ignores_only_field_order() -> None:
    a = bytes.fromhex("080001000000010800020000000200")
    b = bytes.fromhex("080002000000020800010000000100")
    assert canonical(a) == canonical(b)
    assert canonical(a) != canonical(bytes.fromhex("080001000000010800020000000300"))
