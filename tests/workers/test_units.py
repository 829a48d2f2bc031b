"""The workers' pure parts: merging expositions, restart back-off, options, limits, binding."""

from __future__ import annotations

import socket

import pytest

from kitex_grpc import server
from kitex_grpc.governance.limiter import LimitOption
from kitex_grpc.observability.prom_merge import Exposition, merge
from kitex_grpc.server.listen import ListenError, bind_plan
from kitex_grpc.server.supervisor import Backoff, Supervisor, describe_exit
from kitex_grpc.server.worker import divided

WORKER_A = """\
# HELP kitex_server_calls_total Finished RPCs ({call})
# TYPE kitex_server_calls_total counter
kitex_server_calls_total{method="Unary",status="ok"} 3
kitex_server_calls_total{method="Bidi",status="ok"} 1
# HELP kitex_server_duration Duration (s)
# TYPE kitex_server_duration histogram
kitex_server_duration_bucket{method="Unary",le="0.005"} 2
kitex_server_duration_bucket{method="Unary",le="+Inf"} 3
kitex_server_duration_sum{method="Unary"} 0.25
kitex_server_duration_count{method="Unary"} 3
# TYPE kitex_server_in_flight gauge
kitex_server_in_flight{method="Unary"} 2
"""
WORKER_B = """\
# HELP kitex_server_calls_total Finished RPCs ({call})
# TYPE kitex_server_calls_total counter
kitex_server_calls_total{status="ok",method="Unary"} 4 1700000000000
# TYPE kitex_server_duration histogram
kitex_server_duration_bucket{method="Unary",le="0.005"} 1
kitex_server_duration_bucket{method="Unary",le="+Inf"} 4
kitex_server_duration_sum{method="Unary"} 0.5
kitex_server_duration_count{method="Unary"} 4
# TYPE kitex_server_in_flight gauge
kitex_server_in_flight{method="Unary"} 1
# TYPE other_series_from_elsewhere untyped
other_series_from_elsewhere{path="a\\"b,c"} 1.5
"""


def test_merge_sums_equal_name_and_labels_whatever_the_family() -> None:
    merged = merge([WORKER_A, WORKER_B])
    assert merged == (
        "# HELP kitex_server_calls_total Finished RPCs ({call})\n"
        "# TYPE kitex_server_calls_total counter\n"
        'kitex_server_calls_total{method="Unary",status="ok"} 7\n'
        'kitex_server_calls_total{method="Bidi",status="ok"} 1\n'
        "# HELP kitex_server_duration Duration (s)\n"
        "# TYPE kitex_server_duration histogram\n"
        'kitex_server_duration_bucket{method="Unary",le="0.005"} 3\n'
        'kitex_server_duration_bucket{method="Unary",le="+Inf"} 7\n'
        'kitex_server_duration_sum{method="Unary"} 0.75\n'
        'kitex_server_duration_count{method="Unary"} 7\n'
        "# TYPE kitex_server_in_flight gauge\n"
        'kitex_server_in_flight{method="Unary"} 3\n'
        "# TYPE other_series_from_elsewhere untyped\n"
        'other_series_from_elsewhere{path="a\\"b,c"} 1.5\n'
    )
    lines = merged.splitlines()
    assert 'kitex_server_calls_total{method="Unary",status="ok"} 7' in lines  # label order does not matter
    assert 'kitex_server_calls_total{method="Bidi",status="ok"} 1' in lines
    assert 'kitex_server_duration_bucket{method="Unary",le="0.005"} 3' in lines
    assert 'kitex_server_duration_bucket{method="Unary",le="+Inf"} 7' in lines
    assert 'kitex_server_duration_sum{method="Unary"} 0.75' in lines
    assert 'kitex_server_duration_count{method="Unary"} 7' in lines
    assert 'kitex_server_in_flight{method="Unary"} 3' in lines  # gauges are summed too
    assert 'other_series_from_elsewhere{path="a\\"b,c"} 1.5' in lines
    assert lines.count("# TYPE kitex_server_duration histogram") == 1
    # every sample sits under its family's TYPE line
    assert lines.index("# TYPE kitex_server_duration histogram") < lines.index(
        'kitex_server_duration_count{method="Unary"} 7'
    )


def test_retired_counts_keep_counters_and_histograms_not_gauges() -> None:
    retired = Exposition()
    retired.add(WORKER_A, monotonic_only=True)  # worker A exited after its last page
    lines = merge([WORKER_B], retired).splitlines()
    assert 'kitex_server_calls_total{method="Unary",status="ok"} 7' in lines
    assert 'kitex_server_duration_count{method="Unary"} 7' in lines
    assert 'kitex_server_in_flight{method="Unary"} 1' in lines  # A's calls in flight are gone


def test_merge_drops_lines_it_does_not_understand_and_counts_them() -> None:
    total = Exposition()
    total.add('good 1\nbad{x="1" 2\nnan_value NaN\nnot a sample line at all\n')
    assert total.render() == "good 1\nnan_value NaN\n"
    assert total.skipped == 2


def test_backoff_doubles_to_its_bound_and_resets_after_a_stable_run() -> None:
    sup = Supervisor(2, Backoff(initial=0.1, factor=2.0, maximum=1.0, stable_after=10.0))
    assert sup.worker_exited(0, 0.5, expected=False).fail  # before the server was ever ready
    sup.serving = True
    delays = [sup.worker_exited(0, 0.5, expected=False).delay for _ in range(6)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert sup.worker_exited(1, 0.5, expected=False).delay == 0.1  # per slot
    assert sup.worker_exited(0, 11.0, expected=False).delay == 0.1  # ran 11 s: count starts again
    assert sup.restarts == 8
    assert not sup.worker_exited(0, 0.5, expected=True).restart  # told to stop (roll, drain)
    sup.draining = True
    assert not sup.worker_exited(1, 0.5, expected=False).restart


def test_describe_exit() -> None:
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "killed by SIGKILL"


@pytest.mark.parametrize("count", [0, -1, True, 1.5])
def test_with_workers_refuses_counts_below_one(count: object) -> None:
    with pytest.raises(ValueError, match="with_workers: expected a worker count >= 1"):
        server.with_workers(count)  # type: ignore[arg-type]


def test_with_workers_defaults_to_the_usable_cores() -> None:
    import os

    svr = server.new_server(server.with_workers())
    assert svr.options.workers is not None
    assert svr.options.workers.count == len(os.sched_getaffinity(0))


def test_divided_limits_round_up_and_keep_unlimited() -> None:
    total = LimitOption(max_connections=1000, max_qps=999, max_concurrency=0)
    assert divided(total, 4) == LimitOption(max_connections=250, max_qps=250, max_concurrency=0)
    assert divided(LimitOption(max_qps=1), 3) == LimitOption(max_qps=1)


def test_bind_plan_refuses_a_port_taken_even_by_a_reuseport_listener() -> None:
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        for kind in (dict(grpcio=False, reuse_port=True), dict(grpcio=True, reuse_port=None)):
            with pytest.raises(ListenError, match="the port is already in use"):
                bind_plan(f"127.0.0.1:{port}", **kind)  # type: ignore[arg-type]


def test_bind_plan_shared_and_reuseport_sockets_serve_one_port() -> None:
    plan = bind_plan("127.0.0.1:0", grpcio=False, reuse_port=True)
    try:
        a, b = plan.slot_sockets(), plan.slot_sockets()
        port = int(plan.address.rpartition(":")[2])
        assert {s.getsockname()[1] for s in (*a, *b)} == {port}
        assert a[0] is not b[0]
        for s in (*a, *b):
            s.close()
    finally:
        plan.close()
    shared = bind_plan("127.0.0.1:0", grpcio=False, reuse_port=False)
    try:
        assert shared.slot_sockets() is shared.slot_sockets()
        assert shared.kind == "shared"
    finally:
        shared.close()
    with pytest.raises(ListenError, match="grpcio"):
        bind_plan("127.0.0.1:0", grpcio=True, reuse_port=False)
