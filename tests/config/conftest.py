from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.discovery.helpers import run_etcd


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[str]:
    """A real etcd server for this test: its client ``host:port`` on 127.0.0.1."""
    with run_etcd(tmp_path) as endpoint:
        yield endpoint
