"""h2spec, the HTTP/2 conformance tester (github.com/summerwind/h2spec, pinned in interop/h2spec), against the
``GRPC_H2`` server on its own port and on the shared TTHeader port (HTTP/2 handed over after the preface).

Every h2spec case must pass except those listed in :data:`NOT_GRPC`: h2spec sends them as plain HTTP requests
(``GET /`` without ``content-type: application/grpc``) and counts on a response body (DATA frames), which a
gRPC-only server does not give (it answers them at once as gRPC, trailers-only with HTTP 415). The
§8.1.2 cases (malformed requests) pass: RST_STREAM PROTOCOL_ERROR (kitex_grpc/protocol/h2_validate.py).
The case in :data:`OWN_RUN` runs on its own, with the frame it needs.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kitex_grpc import TransportProtocol, server
from tests.gobuild import ROOT, make_go_target
from tests.support import serve

H2SPEC = ROOT / ".cache" / "bin" / "h2spec"

# h2spec's id of each case ("http2/8.1.2.3/1" style, from the JUnit report) that needs a plain HTTP answer.
# Its requests are spec.CommonHeaders: GET / without a content-type, which a gRPC server answers at once
# with a trailers-only HTTP 415 (as grpc-go does): a HEADERS frame and no DATA.
NOT_GRPC: dict[str, str] = {
    "generic/2/2": "wants a response body (DATA) to GET / after a WINDOW_UPDATE; gRPC answers trailers-only",
    "generic/2/3": "wants a response body (DATA) to GET / after a PRIORITY; gRPC answers trailers-only",
    "http2/5.1.2/1": (
        "counts on a zero window holding each GET / response's DATA to keep streams open; answered "
        "trailers-only, each stream closes at once and the limit is never reached"
    ),
}
# Cases whose frame is sized for the 16 KiB default SETTINGS_MAX_FRAME_SIZE, not for what the server
# advertises: each fails in the whole run and passes in a run of its own with the given flags.
OWN_RUN: dict[str, tuple[str, ...]] = {
    # "HEADERS frame that exceeds the SETTINGS_MAX_FRAME_SIZE": 5 headers of --max-header-length (4,000)
    # bytes, about 20 KB: over 16 KiB, under the 256 KiB the h2 transport advertises (MAX_FRAME_SIZE).
    # At 60,000 bytes a header the frame is about 300 KB.
    "http2/4.2/3": ("--max-header-length", "60000"),
}
# Listed cases that may pass by timing: when all of 5.1.2/1's HEADERS frames arrive in one read, h2
# counts them open together (the answers are made after the whole read is parsed) and refuses the
# one over the limit, as the case wants. CI saw that once on the TTHeader port.
MAY_PASS = {"http2/5.1.2/1"}


@pytest.fixture(scope="module")
def h2spec() -> Path:
    make_go_target("h2spec-build", "h2spec (make h2spec-build)")
    return H2SPEC


def failures(report: Path) -> dict[str, str]:
    """The failed or errored cases of an h2spec JUnit report: id -> h2spec's message.

    h2spec v2.2.1 writes ``<testsuite package="http2/8.1.2.3">`` and, per case, ``<testcase
    package="http2/8.1.2.3" classname="Sends a HEADERS frame that omits ':method' ...">`` with no name
    or number: a case's number (``h2spec http2/8.1.2.3/2`` on its command line) is its 1-based place in
    its suite. Skipped cases carry ``<skipped>``; failed ones ``<failure>`` or ``<error>``.
    """
    failed: dict[str, str] = {}
    for suite in ET.parse(report).getroot().iter("testsuite"):
        section = suite.get("package") or suite.get("name") or ""
        for number, case in enumerate(suite.findall("testcase"), 1):
            problem = case.find("failure")
            if problem is None:
                problem = case.find("error")
            if problem is not None:
                detail = " ".join((problem.text or problem.get("message") or "").split())
                failed[f"{section}/{number}"] = f"{case.get('classname')}: {detail}"
    return failed


async def run_h2spec(h2spec: Path, address: str, report: Path, *args: str) -> dict[str, str]:
    """Run h2spec (``args``: case ids and flags; all cases by default) and return its failures."""
    host, port = address.rsplit(":", 1)
    proc = await asyncio.create_subprocess_exec(
        str(h2spec), *args, "-h", host, "-p", port, "-o", "2", "-j", str(report),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with asyncio.timeout(240):
            output, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert report.exists(), output.decode(errors="replace")[-2000:]  # noqa: ASYNC240 (the run is over)
    return failures(report)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "protocol", [TransportProtocol.GRPC_H2, TransportProtocol.TTHEADER], ids=lambda p: p.name
)
async def test_h2spec_passes_but_for_plain_http_cases(
    h2spec: Path, protocol: TransportProtocol, tmp_path: Path
) -> None:
    async with serve(server.with_transport_protocol(protocol)) as (svr, _):
        failed = await run_h2spec(h2spec, svr.address, tmp_path / "h2spec.xml")
        for attempt in (2, 3):
            if not set(failed) - set(NOT_GRPC):
                break
            # A failure counts only if every one of three whole runs shows it. Under CI load, cases
            # that race the server's immediate answer to a plain-HTTP request (6.9.1/3; 8.1.2.6/1 on
            # the TTHeader port, failed in two runs in a row once: the server answered the HEADERS
            # before the read that brought the DATA breaking content-length) are known flakes, to fix
            # by answering a refused request no earlier than its first DATA or END_STREAM.
            # (5.4.1/1's "connection reset by peer" after a GOAWAY is fixed: the lingering close,
            # tests/h2/test_lingering_close.py.)
            again = await run_h2spec(h2spec, svr.address, tmp_path / f"h2spec-{attempt}.xml")
            failed = {case: why for case, why in failed.items() if case in again or case in NOT_GRPC}
        for case, flags in OWN_RUN.items():
            alone = await run_h2spec(h2spec, svr.address, tmp_path / "own.xml", case, *flags)
            assert not alone, alone
    listed = set(NOT_GRPC) | set(OWN_RUN)
    unexpected = {case: why for case, why in failed.items() if case not in listed}
    assert not unexpected, "\n".join(f"{case}: {why}" for case, why in sorted(unexpected.items()))
    # The lists stay honest: a case listed as needing plain HTTP, or its own run, still fails here.
    assert listed - set(failed) <= MAY_PASS
