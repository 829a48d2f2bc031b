"""examples/thrift_streaming: the ttstream server and client run as their docstrings say."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.gobuild import ready_line

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "thrift_streaming"


def test_ttstream_example_server_and_client() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "ttstream_server.py"), "--addr", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        address = ready_line(server, "LISTENING ", "the example server").split()[1]
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "ttstream_client.py"), "--addr", address],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        out = done.stdout.splitlines()
    finally:
        server.terminate()
        server.wait(10)
    assert out[:4] == [
        "bidi: ['m0 (trace=demo-1)', 'm1 (trace=demo-1)', 'm2 (trace=demo-1)']",
        "server stream: [0, 1, 2, 3]",
        "client stream: a,b,c",
        "biz error after [0, 1]: code=1001 message=quota extra={'k': 'v'}",
    ]
    assert out[4].startswith("deadline: rpc timeout")
    assert out[5] == "unary: ping"
