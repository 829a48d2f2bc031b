#!/usr/bin/env python3
"""Manual wire probe for the Go interop binaries (not a test; run by hand).

Starts interop's Go server on free loopback ports, then:

  1. calls it from Python: grpcio stubs generated from protos/echo/v1/echo.proto
     (unary, bidi, errors, metadata) and thriftpy2 (Framed and Buffered);
  2. runs the Go client for every transport through a recording TCP proxy and
     decodes what crossed the wire (TTHeader frames, HTTP/2 HEADERS via hpack).

Prints a human-readable report on stdout. Needs grpcio, grpcio-tools,
thriftpy2, hpack and hyperframe.

    python interop/probe_wire.py [--bin DIR]
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# ---------------------------------------------------------------- server ---


def start_server(bindir: Path) -> tuple[subprocess.Popen, str, str]:
    proc = subprocess.Popen(
        [str(bindir / "server"), "-pb-addr", "127.0.0.1:0", "-thrift-addr", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    ready: list[str] = []
    reader = threading.Thread(target=lambda: ready.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=30)
    if not ready or not ready[0].startswith("READY "):
        proc.kill()
        raise SystemExit(f"server did not become ready: {ready!r}")
    fields = dict(kv.split("=", 1) for kv in ready[0].split()[1:])
    return proc, fields["pb"], fields["thrift"]


def stop_server(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return -9


def hostport(addr: str) -> tuple[str, int]:
    h, p = addr.rsplit(":", 1)
    return h, int(p)


# ----------------------------------------------------------------- proxy ---


class RecordingProxy:
    """Loopback TCP proxy that records the bytes of each connection per direction."""

    def __init__(self, target: str):
        self.target = hostport(target)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[dict[str, bytearray]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            s = socket.create_connection(self.target, timeout=5)
            rec = {"c2s": bytearray(), "s2c": bytearray()}
            self.conns.append(rec)
            for src, dst, key in ((c, s, "c2s"), (s, c, "s2c")):
                t = threading.Thread(target=self._pump, args=(src, dst, rec[key]), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, buf: bytearray) -> None:
        src.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            buf.extend(data)
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        for t in self._threads:
            t.join(timeout=2)


def run_client(bindir: Path, addr: str, transport: str, case: str) -> list[dict]:
    out = subprocess.run(
        [str(bindir / "client"), "-addr", addr, "-transport", transport, "-case", case],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return [json.loads(x) for x in out.stdout.splitlines() if x.strip()]


# -------------------------------------------------------------- TTHeader ---

INFO_PADDING, INFO_KV, INFO_INTKV, INFO_ACL = 0x00, 0x01, 0x10, 0x11


def parse_ttheader_stream(data: bytes) -> list[dict]:
    frames = []
    off = 0
    while off + 14 <= len(data):
        length, magic, flags, seq, hsize = struct.unpack_from(">IHHiH", data, off)
        if magic != 0x1000:
            frames.append({"error": f"not TTHeader at {off}: {data[off : off + 16].hex()}"})
            break
        end = off + 4 + length
        hdr = data[off + 14 : off + 14 + hsize * 4]
        payload = data[off + 14 + hsize * 4 : end]
        p = 0
        proto, ntrans = hdr[0], hdr[1]
        p = 2 + ntrans
        strkv, intkv, acl = {}, {}, None
        while p < len(hdr):
            iid = hdr[p]
            p += 1
            if iid == INFO_PADDING:
                continue
            if iid == INFO_KV:
                (n,) = struct.unpack_from(">H", hdr, p)
                p += 2
                for _ in range(n):
                    (kl,) = struct.unpack_from(">H", hdr, p)
                    k = hdr[p + 2 : p + 2 + kl].decode()
                    p += 2 + kl
                    (vl,) = struct.unpack_from(">H", hdr, p)
                    v = hdr[p + 2 : p + 2 + vl].decode()
                    p += 2 + vl
                    strkv[k] = v
            elif iid == INFO_INTKV:
                (n,) = struct.unpack_from(">H", hdr, p)
                p += 2
                for _ in range(n):
                    k, vl = struct.unpack_from(">HH", hdr, p)
                    intkv[k] = hdr[p + 4 : p + 4 + vl].decode()
                    p += 4 + vl
            elif iid == INFO_ACL:
                (n,) = struct.unpack_from(">H", hdr, p)
                acl = hdr[p + 2 : p + 2 + n].decode()
                p += 2 + n
            else:
                strkv["<unknown info id>"] = hex(iid)
                break
        frames.append(
            {
                "length": length,
                "flags": flags,
                "seq": seq,
                "header_words": hsize,
                "protocol_id": proto,
                "transforms": ntrans,
                "strkv": dict(sorted(strkv.items())),
                "intkv": dict(sorted(intkv.items())),
                "acl": acl,
                "payload_head": payload[:24].hex(),
                "payload_len": len(payload),
            }
        )
        off = end
    return frames


# ----------------------------------------------------------------- HTTP/2 ---


def parse_h2_headers(data: bytes, client_side: bool) -> list[tuple[str, int, list[tuple[str, str]]]]:
    import hpack
    from hyperframe.frame import ContinuationFrame, DataFrame, Frame, HeadersFrame

    dec = hpack.Decoder()
    dec.max_allowed_table_size = 1 << 20
    off = 0
    if client_side:
        assert data[:24] == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", data[:24]
        off = 24
    out = []
    pending = b""
    pending_sid = None
    while off + 9 <= len(data):
        frame, length = Frame.parse_frame_header(memoryview(data[off : off + 9]))
        if off + 9 + length > len(data):
            break
        frame.parse_body(memoryview(data[off + 9 : off + 9 + length]))
        off += 9 + length
        if isinstance(frame, (HeadersFrame, ContinuationFrame)):
            pending += frame.data
            pending_sid = frame.stream_id
            if "END_HEADERS" in frame.flags:
                hdrs = [
                    (k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v)
                    for k, v in dec.decode(pending)
                ]
                out.append(("HEADERS", pending_sid, hdrs))
                pending = b""
        elif isinstance(frame, DataFrame) and frame.data:
            d = bytes(frame.data)
            out.append(("DATA", frame.stream_id, [("first_bytes", d[:5].hex()), ("len", str(len(d)))]))
    return out


# ---------------------------------------------------------------- probes ---


def grpc_probe(pb: str) -> None:
    import grpc
    from grpc_tools import protoc

    tmp = tempfile.mkdtemp(prefix="echo_pb_")
    rc = protoc.main(
        [
            "protoc",
            f"-I{ROOT / 'protos'}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(ROOT / "protos/echo/v1/echo.proto"),
        ]
    )
    assert rc == 0, rc
    sys.path.insert(0, tmp)
    pb2 = importlib.import_module("echo.v1.echo_pb2")
    pb2g = importlib.import_module("echo.v1.echo_pb2_grpc")
    print("\n## grpcio -> Go server", pb)
    with grpc.insecure_channel(pb) as ch:
        stub = pb2g.EchoStub(ch)
        r = stub.Unary(pb2.EchoRequest(message="hello", payload=b"\x00\xff", seq=9), timeout=5)
        print("unary:", repr(r.message), r.payload.hex(), r.seq)
        reqs = [pb2.EchoRequest(message=m, seq=i) for i, m in enumerate(["x", "y", "z"], 1)]
        print("bidi:", [(x.message, x.seq) for x in stub.Bidi(iter(reqs), timeout=5)])
        print(
            "server_stream (seq=0 -> default 3):",
            [(x.message, x.seq) for x in stub.ServerStream(pb2.EchoRequest(message="s"), timeout=5)],
        )
        print("client_stream:", stub.ClientStream(iter(reqs), timeout=5))
        r = stub.Unary(
            pb2.EchoRequest(message="gz", payload=b"a" * 4096), timeout=5, compression=grpc.Compression.Gzip
        )
        print("unary with gzip request compression: ok, payload len", len(r.payload))

        def err_call(label, fn):
            try:
                resp, call = fn()
                print(
                    f"{label}: OK initial={call.initial_metadata()} trailing={call.trailing_metadata()} msg={resp.message!r}"
                )
            except grpc.RpcError as e:
                print(
                    f"{label}: code={e.code()} ({e.code().value[0]}) details={e.details()!r} initial={e.initial_metadata()} trailing={e.trailing_metadata()}"
                )

        err_call(
            "biz error",
            lambda: stub.Unary.with_call(pb2.EchoRequest(message="biz:1001:bad thing"), timeout=5),
        )
        err_call(
            "plain error", lambda: stub.Unary.with_call(pb2.EchoRequest(message="error:boom"), timeout=5)
        )
        err_call(
            "meta (metadata rpc-transit-temp / rpc-persist-persist-key / custom)",
            lambda: stub.Unary.with_call(
                pb2.EchoRequest(message="meta"),
                timeout=5,
                metadata=[("rpc-transit-temp", "t1"), ("rpc-persist-persist-key", "p1"), ("x-custom", "c")],
            ),
        )
        err_call(
            "deadline 100ms vs sleep:1000",
            lambda: stub.Unary.with_call(pb2.EchoRequest(message="sleep:1000"), timeout=0.1),
        )
        for path in ("/echo.v1.Echo/Nope", "/echo.v1.Nope/Unary", "/other.pkg.Echo/Unary", "/Echo/Unary"):
            m = ch.unary_unary(
                path,
                request_serializer=pb2.EchoRequest.SerializeToString,
                response_deserializer=pb2.EchoReply.FromString,
            )
            err_call(f"path {path}", lambda m=m: m.with_call(pb2.EchoRequest(message="p"), timeout=5))
        try:
            list(stub.ServerStream(pb2.EchoRequest(message="biz:7:stream bad", seq=5), timeout=5))
        except grpc.RpcError as e:
            print(
                f"server_stream biz error: code={e.code()} details={e.details()!r} trailing={e.trailing_metadata()}"
            )

    print("\n## grpcio -> recording proxy -> Go server (raw HTTP/2 response headers)")
    px = RecordingProxy(pb)
    try:
        with grpc.insecure_channel(px.addr) as ch:
            for path, msg in (
                ("/echo.v1.Echo/Nope", "p"),
                ("/echo.v1.Nope/Unary", "p"),
                ("/echo.v1.Echo/Unary", "meta"),
            ):
                m = ch.unary_unary(
                    path,
                    request_serializer=pb2.EchoRequest.SerializeToString,
                    response_deserializer=pb2.EchoReply.FromString,
                )
                try:
                    m.with_call(
                        pb2.EchoRequest(message=msg), timeout=5, metadata=[("rpc-transit-temp", "t1")]
                    )
                except grpc.RpcError:
                    pass
    finally:
        px.close()
    for i, rec in enumerate(px.conns):
        for d in ("c2s", "s2c"):
            for kind, sid, hdrs in parse_h2_headers(bytes(rec[d]), d == "c2s"):
                if kind == "HEADERS":
                    print(f"  conn{i} {d} stream={sid}: {hdrs}")


def thrift_probe(th: str) -> None:
    import thriftpy2
    from thriftpy2.rpc import make_client
    from thriftpy2.transport import TBufferedTransportFactory, TFramedTransportFactory

    echo = thriftpy2.load(str(ROOT / "idl/echo.thrift"), module_name="echo_thrift")
    host, port = hostport(th)
    for name, tf in (("framed", TFramedTransportFactory()), ("buffered", TBufferedTransportFactory())):
        print(f"\n## thriftpy2 {name} -> Go server", th)
        c = make_client(echo.Echo, host, port, trans_factory=tf, timeout=5000)
        r = c.echo(echo.EchoRequest(message="hello", payload=b"\x01\x02", seq=5))
        print("echo:", r)
        try:
            c.fail(echo.EchoRequest(message="boom", seq=7))
        except echo.EchoError as e:
            print("fail -> EchoError:", e.code, e.message)
        try:
            c.echo(echo.EchoRequest(message="error:boom"))
        except Exception as e:  # TApplicationException
            print("error:boom ->", type(e).__name__, getattr(e, "type", None), repr(getattr(e, "message", e)))
        try:
            r = c.echo(echo.EchoRequest(message="biz:1001:bad thing"))
            print("biz over", name, "->", r)
        except Exception as e:
            print("biz over", name, "->", type(e).__name__, e)
        c.close()


def capture(bindir: Path, target: str, transport: str, cases: list[str]) -> None:
    for case in cases:
        px = RecordingProxy(target)
        try:
            lines = run_client(bindir, px.addr, transport, case)
        finally:
            px.close()
        print(f"\n### {transport} / {case}: client says {json.dumps(lines)}")
        for i, rec in enumerate(px.conns):
            for d in ("c2s", "s2c"):
                data = bytes(rec[d])
                if not data:
                    print(f"  conn{i} {d}: <no bytes>")
                    continue
                if transport == "grpc":
                    for kind, sid, hdrs in parse_h2_headers(data, d == "c2s"):
                        print(f"  conn{i} {d} {kind} stream={sid}: {hdrs}")
                elif transport == "framed":
                    print(f"  conn{i} {d}: {len(data)} bytes, first 16: {data[:16].hex()}")
                else:
                    for f in parse_ttheader_stream(data):
                        print(f"  conn{i} {d}: {f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / ".cache/interop/bin"))
    args = ap.parse_args()
    bindir = Path(args.bin)
    proc, pb, th = start_server(bindir)
    print(f"server READY pb={pb} thrift={th}")
    try:
        grpc_probe(pb)
        thrift_probe(th)
        print("\n## Go client through a recording proxy")
        capture(
            bindir,
            th,
            "ttheader",
            ["echo", "biz_error", "metainfo", "timeout", "app_error", "exception", "oneway"],
        )
        capture(bindir, th, "ttheader_framed", ["echo"])
        capture(bindir, th, "framed", ["echo", "biz_error"])
        capture(bindir, pb, "kitexpb", ["unary", "biz_error", "plain_error"])
        capture(
            bindir,
            pb,
            "grpc",
            ["unary", "biz_error", "metainfo", "gzip", "plain_error", "server_stream_biz_error"],
        )
    finally:
        print("\nserver exit code after SIGTERM:", stop_server(proc))


if __name__ == "__main__":
    main()
