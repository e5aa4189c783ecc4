"""The builtin data plane's metrics as the admin API serves them at
GET /metrics (DESIGN §2.2): requests by route and status, upstream latency,
connections, the snapshot generation."""

import time

import pytest

from dp_util import raw, raw_upstream, request_bytes, route  # noqa: F401 (fixture)


@pytest.fixture
def dp(portico):
    return portico()


def test_metrics_endpoint(dp, raw_upstream):
    up = raw_upstream()
    route(dp, "logme", "log.test", up.port)
    for _ in range(2):
        assert raw(dp.http_port, request_bytes("log.test", "/m")).status == 200
    assert raw(dp.http_port, request_bytes("nowhere.test", "/")).status == 404
    # A worker counts a request once its response is written: the client
    # can read the answer a moment before the counts move.
    want = ['portico_requests_total{route="logme",code="200"} 3',  # with the API's verify request
            'portico_requests_total{route="",code="404"} 1',
            'portico_upstream_latency_seconds_count{route="logme"} 3']
    deadline = time.monotonic() + 5
    m = dp.api("GET", "/metrics").text
    while not all(w in m for w in want) and time.monotonic() < deadline:
        time.sleep(0.05)
        m = dp.api("GET", "/metrics").text
    for w in want:
        assert w in m
    assert "portico_connections{side=\"client\"}" in m
    assert "portico_snapshot_generation" in m
