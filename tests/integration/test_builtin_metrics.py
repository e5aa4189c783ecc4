"""The builtin data plane's metrics as the admin API serves them at
GET /metrics (DESIGN §2.2): requests by route and status, upstream latency,
connections, the snapshot generation."""

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
    m = dp.api("GET", "/metrics").text
    assert 'portico_requests_total{route="logme",code="200"} 3' in m  # with the API's verify request
    assert 'portico_requests_total{route="",code="404"} 1' in m
    assert 'portico_upstream_latency_seconds_count{route="logme"} 3' in m
    assert "portico_connections{side=\"client\"}" in m
    assert "portico_snapshot_generation" in m
