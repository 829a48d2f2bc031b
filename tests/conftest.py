"""Test-wide set-up: generated code must exist (``make test`` generates it; this covers bare pytest)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if not (ROOT / "gen" / "echo" / "v1" / "echo_kitex.py").exists():
    from kitex_grpc.codegen import generate

    generate([ROOT / "protos" / "echo" / "v1" / "echo.proto"], ROOT / "gen")

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
