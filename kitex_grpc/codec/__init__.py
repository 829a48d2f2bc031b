"""Payload codecs: Thrift structs through thriftpy2 (:mod:`.thrift`) and Kitex Protobuf messages
(:mod:`.kitex_protobuf`). Imported lazily: only a process that uses Thrift loads thriftpy2."""

from __future__ import annotations
