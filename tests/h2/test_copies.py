"""How often a large message is copied on the HTTP/2 transport's own path (issue: fewer copies).

Counted with bench/memcount.c preloaded into a child process (``cc`` builds it, as the compiled
build needs a C compiler anyway): every memcpy/memmove of 4 KiB or more, in bytes, over the bytes of
the messages. Protobuf's and the application's copies are not in these steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.copies import build_shim
from kitex_grpc.transport.h2.config import MAX_FRAME_SIZE

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(
    scope="module", params=["16384", str(MAX_FRAME_SIZE)], ids=["16KiB-frames", "advertised-frames"]
)
def copies(request: pytest.FixtureRequest, measured: dict[str, dict[str, float]]) -> dict[str, float]:
    return measured[request.param]


@pytest.fixture(scope="module")
def measured() -> dict[str, dict[str, float]]:
    env = {**os.environ, "LD_PRELOAD": str(build_shim())}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    out = subprocess.run(
        [sys.executable, "-m", "tests.h2.copies_probe"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    result: dict[str, dict[str, float]] = json.loads(out.stdout)
    return result


def test_every_message_arrives_intact_through_a_reused_receive_buffer(copies: dict[str, float]) -> None:
    # Reads are views of one buffer that is overwritten after each read: a kept view would corrupt.
    assert copies["intact"] is True


def test_sending_copies_a_message_once(copies: dict[str, float]) -> None:
    # Into the output buffer, and not joined with its 5-byte prefix first, nor copied out of it again.
    assert copies["client_send"] <= 1.01
    assert copies["server_send"] <= 1.01


def test_receiving_copies_a_message_twice(copies: dict[str, float]) -> None:
    # Once out of the reused read buffer, once when the message's pieces are joined; frames are
    # views, not copies (plus the few bytes of frames split across reads).
    assert copies["server_receive"] <= 2.2
    assert copies["client_receive"] <= 2.2
