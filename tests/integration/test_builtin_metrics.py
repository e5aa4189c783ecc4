"""The builtin data plane's metrics as the admin API serves them at
GET /metrics (DESIGN §2.2): requests by route and status, upstream latency,
connections, the snapshot generation."""

import time

import pytest

from dp_util import raw, raw_upstream, reply, request_bytes, route  # noqa: F401 (fixture)


@pytest.fixture
def dp(portico):
    return portico()


def wait_for_metrics(dp, want):
    """The /metrics text once it holds every line of want (a worker counts
    a request once its response is written: the client can read the
    answer a moment before the counts move)."""
    deadline = time.monotonic() + 5
    m = dp.api("GET", "/metrics").text
    while not all(w in m for w in want) and time.monotonic() < deadline:
        time.sleep(0.05)
        m = dp.api("GET", "/metrics").text
    for w in want:
        assert w in m
    return m


def test_metrics_endpoint(dp, raw_upstream):
    up = raw_upstream()
    route(dp, "logme", "log.test", up.port)
    for _ in range(2):
        assert raw(dp.http_port, request_bytes("log.test", "/m")).status == 200
    assert raw(dp.http_port, request_bytes("nowhere.test", "/")).status == 404
    m = wait_for_metrics(dp, ['portico_requests_total{route="logme",code="200"} 3',  # with the API's verify
                              'portico_requests_total{route="",code="404"} 1',
                              'portico_upstream_latency_seconds_count{route="logme"} 3'])
    assert "portico_connections{side=\"client\"}" in m
    assert "portico_snapshot_generation" in m


def test_many_statuses_of_one_route(dp, raw_upstream):
    """A route keeps its first few statuses in place and the rest in a
    table made when needed: every status is counted exactly, before and
    after that table exists."""
    def handler(peer, up):
        while (req := peer.read_head()) is not None:
            peer.read_body(req)
            status = int(req["target"].rsplit("/", 1)[1]) if req["target"].startswith("/s/") else 200
            peer.send(reply(status, b"x"))

    up = raw_upstream(handler)
    route(dp, "many", "many.test", up.port)  # the verify request: one 200
    counts = {200: 2, 201: 3, 404: 1, 500: 2, 503: 4, 418: 2, 299: 1}
    for status, n in counts.items():
        for _ in range(n):
            assert raw(dp.http_port, request_bytes("many.test", f"/s/{status}")).status == status
    want = [f'portico_requests_total{{route="many",code="{code}"}} {n}'
            for code, n in [("200", 3), ("201", 3), ("404", 1), ("500", 2), ("503", 4), ("4xx", 2), ("2xx", 1)]]
    want.append('portico_upstream_latency_seconds_count{route="many"} 16')
    m = wait_for_metrics(dp, want)
    assert m.count('portico_requests_total{route="many",') == 7
