"""TTStreamConfig refuses values a transport cannot use, naming the field."""

from __future__ import annotations

import math
from typing import Any

import pytest

from kitex_grpc.transport.ttstream.config import DEFAULT_TTSTREAM, TTStreamConfig


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("recv_queue_size", 0),
        ("pool_size", -1),
        ("max_streams", 1.5),
        ("max_idle_time", 0),
        ("dial_timeout", -0.5),
        ("dial_timeout", math.inf),
        ("max_idle_time", math.nan),
        ("dial_timeout", True),
        ("max_idle_time", "60"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"TTStreamConfig.{field}"):
        TTStreamConfig(**{field: value})


def test_defaults() -> None:
    assert (DEFAULT_TTSTREAM.recv_queue_size, DEFAULT_TTSTREAM.pool_size, DEFAULT_TTSTREAM.max_streams) == (
        256,
        1,
        10000,
    )
    assert (DEFAULT_TTSTREAM.max_idle_time, DEFAULT_TTSTREAM.dial_timeout) == (60.0, 1.0)
