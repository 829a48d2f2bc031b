from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.kitex_peer import GoServer, build_binaries, go_server


@pytest.fixture(scope="session")
def kitex_bin() -> Path:
    return build_binaries()


@pytest.fixture(scope="module")
def kitex_server(kitex_bin: Path) -> Iterator[GoServer]:
    with go_server(kitex_bin) as server:
        yield server
