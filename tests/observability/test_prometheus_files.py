"""The shipped Prometheus alert rules and Grafana dashboard (examples/prometheus/), checked with promtool
and against the series a real server and client export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kitex_grpc import client, server
from kitex_grpc.errors import BizStatusError, KitexError
from kitex_grpc.observability.kitex_prom import KitexPrometheus
from tests.gobuild import ROOT, unavailable
from tests.support import Req, connect, serve

FILES = ROOT / "examples" / "prometheus"
SERIES = {
    "kitex_server_throughput",
    "kitex_client_throughput",
    "kitex_server_latency_us_bucket",
    "kitex_client_latency_us_bucket",
    "kitex_client_conn_pool_connections",
    "kitex_client_conn_pool_dials_total",
    "kitex_client_conn_pool_reuses_total",
    "kitex_client_conn_pool_dial_failures_total",
}
LABELS = {"caller", "callee", "method", "status", "retry", "le", "transport", "address", "state"}
# What promtool's linter says about monitor-prometheus's own names, which we keep as Kitex has them.
KITEX_NAME_LINTS = {
    "kitex_client_latency_us metric names should not contain abbreviated units",
    "kitex_server_latency_us metric names should not contain abbreviated units",
    'kitex_client_throughput counter metrics should have "_total" suffix',
    'kitex_server_throughput counter metrics should have "_total" suffix',
}


def promtool(*args: str, stdin: str | None = None, cwd: Path = FILES) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        unavailable("promtool is not installed (apt-get install prometheus)")
    assert tool is not None
    return subprocess.run([tool, *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=120)


def test_the_alert_rules_are_valid_and_their_unit_tests_pass() -> None:
    checked = promtool("check", "rules", "kitex-alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout
    tested = promtool("test", "rules", "kitex-alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def dashboard_queries() -> list[str]:
    dashboard = json.loads((FILES / "kitex-dashboard.json").read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries.append(target["expr"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(metric, label) is Grafana's, not PromQL: check the metric and label
            found = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"]["query"])
            assert found is not None and found[1] in SERIES and found[2] in LABELS
    return queries


def _as_promql(query: str) -> str:
    """A dashboard query with Grafana's variables replaced as Grafana would, for 'All'."""
    return query.replace("$__rate_interval", "1m").replace('"$callee"', '".*"').replace('"$caller"', '".*"')


def test_the_dashboard_queries_parse_and_use_only_the_exported_series(tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert len(queries) == 13
    for query in queries:
        names = set(re.findall(r"\b(kitex_\w+)", query))
        assert names and names <= SERIES, query
        for group in re.findall(r"by \(([^)]*)\)", query):
            assert {g.strip() for g in group.split(",")} <= LABELS, query
    # promtool parses PromQL in rule files: one recording rule per query
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:q{i}", "expr": _as_promql(q)} for i, q in enumerate(queries)
                ],
            }
        ]
    }
    (tmp_path / "dashboard-rules.yml").write_text(json.dumps(rules))  # JSON is YAML
    checked = promtool("check", "rules", "dashboard-rules.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def _real_calls() -> str:
    """The exposition text after real calls (client and server series in one registry): 3 succeed
    (one of them a BizStatusError) and 1 error."""
    served = KitexPrometheus("127.0.0.1:0")
    async with (
        serve(server.with_suite(served)) as (svr, _),
        connect(svr, client.with_suite(served), client.with_client_basic_info("py-caller")) as cli,
    ):
        await cli.Unary(Req(message="a"))
        await cli.Unary(Req(message="b"))
        with pytest.raises(BizStatusError):
            await cli.Unary(Req(message="biz:3:no"))
        with pytest.raises(KitexError):
            await cli.Unary(Req(message="error:x"))
        from tests.observability.test_kitex_prometheus import scrape

        assert served.endpoint is not None
        _, body = await scrape(served.endpoint.address)
    return body


async def test_a_real_scrape_lints_clean_apart_from_kitex_names() -> None:
    body = await _real_calls()
    linted = promtool("check", "metrics", stdin=body)
    problems = {line.strip() for line in (linted.stdout + linted.stderr).splitlines() if line.strip()}
    assert problems == KITEX_NAME_LINTS  # no format error: only the names Kitex chose


async def test_the_alerts_fire_on_the_series_of_a_real_server(tmp_path: Path) -> None:
    """The real scrape's throughput series, repeated every minute, drive the shipped error-rate rule."""
    body = await _real_calls()
    series: list[dict[str, Any]] = []
    for line in body.splitlines():
        if line.startswith("kitex_server_throughput{"):
            name, _, value = line.rpartition(" ")
            series.append({"series": name, "values": f"0+{value}x20"})
    assert [s["series"] for s in series] == [
        'kitex_server_throughput{callee="unknown",caller="py-caller",method="Unary",retry="0",status="error"}',
        'kitex_server_throughput{callee="unknown",caller="py-caller",method="Unary",retry="0",status="succeed"}',
    ]
    test = {
        "rule_files": [str(FILES / "kitex-alerts.yml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": "15m",
                        "alertname": "KitexServerHighErrorRate",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "callee": "unknown", "method": "Unary"},
                                "exp_annotations": {
                                    "summary": "unknown.Unary: 25% of calls fail",
                                    "description": "More than 5% of the calls to this method ended in error "
                                    "for 5 minutes.",
                                },
                            }
                        ],
                    }
                ],
                "promql_expr_test": [
                    {
                        "expr": "sum by (status) (kitex_server_throughput)",
                        "eval_time": "1m",
                        "exp_samples": [
                            {"labels": '{status="error"}', "value": 1},
                            {"labels": '{status="succeed"}', "value": 3},
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "real.test.yml").write_text(json.dumps(test))
    tested = promtool("test", "rules", "real.test.yml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
