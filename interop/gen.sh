#!/usr/bin/env bash
# Regenerates interop/kitex_gen from the project's IDLs with the pinned kitex tool.
# CI does not run this: the generated code is committed, CI only runs `go build`.
#
#   bash interop/gen.sh            (from anywhere)
#
# Needs Go and the Go module proxy. Everything goes into <repo>/.cache/.
set -euo pipefail

KITEX_VERSION=v0.16.3   # keep in step with the require line in go.mod

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [ ! -x "$GO" ]; then
  echo "gen.sh: go not found (set GO=/path/to/go)" >&2
  exit 1
fi
export GOMODCACHE="$root/.cache/go/mod" GOCACHE="$root/.cache/go/build" GOFLAGS=-modcacherw GOTOOLCHAIN=local
export GOBIN="$root/.cache/go/bin"

# 1. Install the kitex tool at the pinned version. `go install ...@version`
#    cannot be used here: it asks the proxy for the module's version list
#    (to check for deprecation) and that request is refused in this
#    environment. Installing from a throw-away module that requires the
#    exact version avoids the list lookup.
if ! "$GOBIN/kitex" -version 2>/dev/null | grep -qx "$KITEX_VERSION"; then
  tooldir="$root/.cache/kitex-tool"
  rm -rf "$tooldir" && mkdir -p "$tooldir"
  (cd "$tooldir" &&
    "$GO" mod init kitextool >/dev/null 2>&1 &&
    "$GO" get "github.com/cloudwego/kitex/tool/cmd/kitex@$KITEX_VERSION" &&
    "$GO" install github.com/cloudwego/kitex/tool/cmd/kitex)
fi
KITEX="$GOBIN/kitex"
"$KITEX" -version

# 2. The protobuf IDL is copied with one change: go_package "echo" -> "echopb".
#    The Thrift IDL (namespace go echo) also generates kitex_gen/echo, so the
#    two would collide. The proto package (echo.v1), and so the gRPC path
#    /echo.v1.Echo/<Method>, is unchanged.
mkdir -p "$here/idl"
sed 's#^option go_package = "echo";#option go_package = "echopb";#' \
  "$root/protos/echo/v1/echo.proto" > "$here/idl/echo.proto"
grep -q 'go_package = "echopb"' "$here/idl/echo.proto" || {
  echo "gen.sh: go_package rewrite failed; did protos/echo/v1/echo.proto change?" >&2; exit 1; }

# 3. Generate (kitex writes into ./kitex_gen relative to the working dir).
cd "$here"
rm -rf kitex_gen
"$KITEX" -module github.com/kitex-grpc/interop "$root/idl/echo.thrift"
# Thrift streaming without -streamx: streams over gRPC (application/grpc+thrift). Its Go package is
# echostream (namespace go): a package named "stream" clashes with the generated code's own variable.
"$KITEX" -module github.com/kitex-grpc/interop "$root/idl/stream.thrift"
"$KITEX" -module github.com/kitex-grpc/interop -I idl idl/echo.proto
"$GO" mod tidy
"$GO" build ./...
echo "gen.sh: kitex_gen regenerated"
