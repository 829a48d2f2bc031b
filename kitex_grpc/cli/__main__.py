"""``python -m kitex_grpc.cli``: the ``kitex-grpc`` command."""

from __future__ import annotations

from kitex_grpc.cli import main

raise SystemExit(main())
