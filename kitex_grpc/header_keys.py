"""Kitex's string keys of TTHeader info and gRPC metadata, each defined here once.

These are wire facts: a Go Kitex peer writes and reads exactly these strings. Each cites where Kitex
(github.com/cloudwego/kitex) or its shared gopkg (github.com/cloudwego/gopkg) defines it. The
metainfo prefixes (``RPC_TRANSIT_`` ...) live in :mod:`kitex_grpc.metainfo`.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BIZ_EXTRA_KEY",
    "BIZ_MESSAGE_KEY",
    "BIZ_STATUS_KEY",
    "CANCEL_PATH_KEY",
    "CONN_RESET_KEY",
    "IDL_SERVICE_KEY",
]

# TTHeader str key: the IDL service name a client calls; the server routes by it (Kitex
# transmeta.HeaderIDLServiceName, pkg/remote/transmeta/metakey.go; gopkg protocol/ttheader/metakey.go).
IDL_SERVICE_KEY: Final = "isn"

# TTHeader str key a server puts on a reply when it will close the connection (graceful stop, or a
# request it could not serve): the client retires the connection (Kitex
# transmeta.HeaderConnectionReadyToReset, pkg/remote/transmeta/metakey.go; rpcinfo.ConnResetTag,
# pkg/rpcinfo/basicinfo.go).
CONN_RESET_KEY: Final = "crrst"

# A BizStatusError: TTHeader str keys of the reply (Kitex pkg/transmeta/ttheader.go bizStatus,
# bizMessage, bizExtra) and gRPC trailers (pkg/remote/trans/nphttp2/grpc/http2_server.go, read in
# http_util.go); TTHeader Streaming trailers too (pkg/remote/trans/ttstream/server_handler.go).
BIZ_STATUS_KEY: Final = "biz-status"
BIZ_MESSAGE_KEY: Final = "biz-message"
BIZ_EXTRA_KEY: Final = "biz-extra"

# TTHeader Streaming str key of an Rst: the comma-joined cancel path (gopkg
# protocol/ttheader/metakey.go HeaderTTStreamCancelPath).
CANCEL_PATH_KEY: Final = "ttscp"
