"""HPACK with memoised hot paths: the encoder and decoder the gRPC cores give to h2.

gRPC sends the same few header fields on every call (``:method POST``, ``:path``, ``content-type``,
``:status 200``, ``grpc-status 0`` ...). After the first call each of them sits in the HPACK dynamic
table, so its encoding is a one- or two-byte index and decoding the block does not change the table.
The ``hpack`` library still walks its whole machinery (and its debug logging) for every field.

Both classes here keep hpack's exact output and state, and only skip work whose result is known:

- :class:`CachingEncoder` remembers the bytes of each ``(name, value)`` field while the dynamic
  table is unchanged. A field the table does not hold yet goes through hpack (which adds it, a table
  change that empties the memo). ``HeaderTuple`` / ``NeverIndexedHeaderTuple`` fields and a pending
  table-size update always take hpack's path.
- :class:`CachingDecoder` remembers whole header blocks whose decoding left the table unchanged
  (blocks made of indexed fields and literals without indexing), while the table is unchanged. Any
  other block (a literal with incremental indexing, a table-size update: e.g. grpc.aio's first
  requests, or a per-call ``grpc-timeout`` value) is decoded by hpack, and a table change empties the
  memo.

"Unchanged" is exact: :class:`CountingHeaderTable` counts every mutation of the dynamic table (an
added entry, a resize). Pinned to hpack 4 (``Encoder.add``, ``HeaderTable.add`` / ``maxsize``) by
tests/protocol/test_h2_call.py.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hpack import Decoder, Encoder, HeaderTuple
from hpack.table import HeaderTable

__all__ = ["CachingDecoder", "CachingEncoder", "CountingHeaderTable"]

_MAX_MEMO = 512  # entries per memo; emptied when full (a peer varying fields cannot grow it)
# Decoded blocks remembered only when small: a memo entry holds its block and one tuple per field,
# and a short block can name a large table entry many times (HPACK amplification). gRPC request and
# response header blocks are tens of bytes once the table is warm.
_MEMO_MAX_BLOCK = 512  # bytes of the encoded block
_MEMO_MAX_FIELDS = 32
_MAX_DECODE_MEMO = 128  # entries of a decoder's memo: at most ~0.4 MB per connection, whatever the peer


class CountingHeaderTable(HeaderTable):
    """hpack's header table, with ``generation`` bumped by every change of the dynamic table."""

    def __init__(self) -> None:
        self.generation = 0
        super().__init__()

    def add(self, name: bytes, value: bytes) -> None:
        self.generation += 1
        super().add(name, value)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, newmax: int) -> None:
        self.generation += 1
        HeaderTable.maxsize.fset(self, newmax)  # type: ignore[attr-defined]


class CachingEncoder(Encoder):
    """``hpack.Encoder`` whose per-field output is memoised while the dynamic table is unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.header_table: CountingHeaderTable = CountingHeaderTable()
        self._memo: dict[tuple[bytes, bytes], bytes] = {}
        self._memo_generation = -1

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        table = self.header_table
        if table.resized or not huffman or isinstance(headers, dict):
            return super().encode(headers, huffman)
        memo = self._memo
        if self._memo_generation != table.generation or len(memo) > _MAX_MEMO:
            memo.clear()
            self._memo_generation = table.generation
        out: list[bytes] = []
        for header in headers:
            encoded = memo.get(header) if type(header) is tuple and len(header) == 2 else None
            if encoded is None:
                encoded = self._encode_field(header)
                if self._memo_generation == table.generation:
                    if type(header) is tuple and len(header) == 2:
                        memo[header] = encoded
                else:  # the field was added to the table: what we remembered may be stale now
                    memo.clear()
                    self._memo_generation = table.generation
            out.append(encoded)
        return b"".join(out)

    def _encode_field(self, header: Any) -> bytes:
        # What hpack's encode does for one field of an iterable (hpack 4.x).
        if isinstance(header, HeaderTuple):
            sensitive = not header.indexable
        else:
            sensitive = bool(header[2]) if len(header) > 2 else False
        name, value = header[0], header[1]
        if type(name) is not bytes:
            name = str(name).encode("utf-8")
        if type(value) is not bytes:
            value = str(value).encode("utf-8")
        return self.add((name, value), sensitive, True)


class CachingDecoder(Decoder):
    """``hpack.Decoder`` that memoises header blocks whose decoding did not change the table."""

    def __init__(self, max_header_list_size: int = 65536) -> None:
        super().__init__(max_header_list_size)
        self.header_table: CountingHeaderTable = CountingHeaderTable()
        self.max_allowed_table_size = self.header_table.maxsize
        self._memo: dict[bytes, tuple[list[Any], int]] = {}
        self._memo_generation = -1

    def decode(self, data: bytes, raw: bool = False) -> Iterable[HeaderTuple]:
        if raw:
            return self.decode_sized(data)[0]
        self._sync_memo()
        return list(super().decode(data, raw))

    def decode_sized(self, data: bytes) -> tuple[list[HeaderTuple], int]:
        """Decode ``data`` (raw bytes) and return the fields with the header list size they make
        (RFC 9113 §6.5.2: name + value + 32 octets per field)."""
        table = self.header_table
        memo = self._memo
        self._sync_memo()
        hit = memo.get(data)
        if (
            hit is not None
            and hit[1] <= self.max_header_list_size
            and table.maxsize <= self.max_allowed_table_size
        ):
            return list(hit[0]), hit[1]
        headers = list(super().decode(data, True))
        size = sum(len(n) + len(v) + 32 for n, v in headers)
        if (
            self._memo_generation == table.generation
            and len(data) <= _MEMO_MAX_BLOCK
            and len(headers) <= _MEMO_MAX_FIELDS
        ):
            if len(memo) >= _MAX_DECODE_MEMO:
                memo.clear()
            memo[bytes(data)] = (headers, size)
        return list(headers), size

    def _sync_memo(self) -> None:
        table = self.header_table
        if self._memo_generation != table.generation:
            self._memo.clear()
            self._memo_generation = table.generation
