"""Active health checks (DESIGN §6, seed 002): Python upstreams whose /health
the test flips.  Traffic leaves a failing upstream within interval x
threshold and comes back once it recovers, through the builtin data plane
and through a real nginx; the verdicts show in GET /proxies, on /metrics
and in the audit trail, survive a restart, and the data plane ejects an
upstream that refuses connections before the checks notice."""

import json
import socket
import threading
from http.server import ThreadingHTTPServer

import pytest

from conftest import Upstream, _UpstreamHandler, free_port, wait_until

FAST = {"path": "/health", "interval_ms": 200, "timeout_ms": 1000, "healthy_threshold": 2, "unhealthy_threshold": 3}


@pytest.fixture(params=["builtin", "nginx"])
def engine(request):
    return request.param


def served_by(p, host, n=12):
    """The upstreams that answered n requests in a row (new connections)."""
    out = []
    for _ in range(n):
        r = p.get(host, "/work")
        out.append(r.headers.get("x-upstream") if r.status == 200 else r.status)
    return out


def upstream_states(p, name):
    r = p.api("GET", f"/proxies/{name}")
    assert r.status == 200, r
    return {u["port"]: u["health"]["state"] for u in r.json["upstreams"]}


def test_traffic_leaves_a_failing_upstream_and_comes_back(portico, upstream, engine):
    p = portico(engine=engine)
    u1, u2 = upstream("u1"), upstream("u2")
    body = {"domain": "pool.example.com",
            "upstreams": [{"host": "127.0.0.1", "port": u1.port}, {"host": "127.0.0.1", "port": u2.port}],
            "health_check": FAST}
    assert p.put_proxy("pool", body, headers={"X-Request-ID": "pool-put"}).status == 201
    wait_until(lambda: set(upstream_states(p, "pool").values()) == {"healthy"}, timeout=20,
               what="both upstreams healthy")
    assert set(served_by(p, "pool.example.com")) == {"u1", "u2"}

    u1.healthy = False
    wait_until(lambda: upstream_states(p, "pool")[u1.port] == "unhealthy", timeout=20, what="u1 unhealthy")
    # nginx needs its coalesced reload; then only u2 serves.
    wait_until(lambda: set(served_by(p, "pool.example.com")) == {"u2"}, timeout=20, what="traffic to u2 only")
    got = p.api("GET", "/proxies/pool").json
    assert got["last_health_status"] == "healthy"
    h1 = next(u["health"] for u in got["upstreams"] if u["port"] == u1.port)
    assert h1["last_status"] == 503 and h1["last_error"] == "answered 503"
    assert h1["consecutive"] >= 3 and h1["checked_at"].endswith("Z") and h1["passive"] is False
    # u1 still answers ordinary requests: only the verdict keeps traffic away.
    assert set(served_by(p, "pool.example.com", n=20)) == {"u2"}

    u1.healthy = True
    wait_until(lambda: upstream_states(p, "pool")[u1.port] == "healthy", timeout=20, what="u1 healthy again")
    wait_until(lambda: set(served_by(p, "pool.example.com")) == {"u1", "u2"}, timeout=20,
               what="traffic back on both")

    rows = [a for a in p.api("GET", "/audit").json if a["action"] == "health.transition"]
    assert all(a["actor"] == "health-check" and a["droplet_name"] == "pool" for a in rows)
    details = [json.loads(a["detail"]) for a in rows if a["detail"]]
    down = [d for d in details if d["upstream"] == f"127.0.0.1:{u1.port}" and d["to"] == "unhealthy"]
    assert down and down[0]["from"] == "healthy" and down[0]["status"] == 503
    assert any(a["error_code"] == "UPSTREAM_UNHEALTHY" for a in rows)
    assert any(d["upstream"] == f"127.0.0.1:{u1.port}" and d["from"] == "unhealthy" and d["to"] == "healthy"
               for d in details)


def test_one_transition_is_audited_for_every_proxy_behind_the_upstream(portico, upstream):
    """Three proxies share an upstream: its fall is one transition, recorded
    once per proxy with that proxy's name and domain and one correlation
    id."""
    p = portico()
    u = upstream("shared")
    for name in ("a", "b", "c"):
        body = {"domain": f"{name}.shared.example.com", "upstream_host": "127.0.0.1", "upstream_port": u.port,
                "health_check": FAST}
        assert p.put_proxy(name, body).status == 201
    wait_until(lambda: upstream_states(p, "c")[u.port] == "healthy", timeout=20, what="healthy")
    u.healthy = False

    def down_rows():
        rows = [a for a in p.api("GET", "/audit").json
                if a["action"] == "health.transition" and a["error_code"] == "UPSTREAM_UNHEALTHY"]
        return rows if len(rows) >= 3 else None

    rows = wait_until(down_rows, timeout=20, what="three audit rows")
    assert sorted((a["droplet_name"], a["domain"]) for a in rows) == [
        ("a", "a.shared.example.com"), ("b", "b.shared.example.com"), ("c", "c.shared.example.com")]
    assert len({a["correlation_id"] for a in rows}) == 1
    assert all(a["actor"] == "health-check" and json.loads(a["detail"])["to"] == "unhealthy" for a in rows)


def test_no_healthy_upstream(portico, upstream, engine):
    p = portico(engine=engine)
    up = upstream("only")
    assert p.put_proxy("solo", {"domain": "solo.example.com", "upstream_host": "127.0.0.1",
                                "upstream_port": up.port, "health_check": FAST}).status == 201
    assert p.get("solo.example.com", "/").status == 200
    up.healthy = False
    wait_until(lambda: p.api("GET", "/proxies/solo").json["last_health_status"] == "unhealthy", timeout=20,
               what="solo unhealthy")
    # nginx's old workers may take a last connection while a reload
    # settles: wait for a run of answers, not for one.
    wait_until(lambda: all(p.get("solo.example.com", "/").status == 503 for _ in range(5)), timeout=20,
               what="503")
    r = p.get("solo.example.com", "/")
    assert r.status == 503 and r.json["error"]["code"] == "NO_HEALTHY_UPSTREAM"
    up.healthy = True
    wait_until(lambda: all(p.get("solo.example.com", "/").status == 200 for _ in range(5)), timeout=20,
               what="200 again")
    assert p.api("GET", "/proxies/solo").json["last_health_status"] == "healthy"


def _metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_nginx_reloads_are_coalesced(portico, upstream):
    p = portico(engine="nginx")
    ups = [upstream(f"n{i}") for i in range(6)]
    body = {"domain": "many.example.com", "health_check": FAST,
            "upstreams": [{"host": "127.0.0.1", "port": u.port} for u in ups]}
    assert p.put_proxy("many", body).status == 201
    wait_until(lambda: set(upstream_states(p, "many").values()) == {"healthy"}, timeout=20, what="all healthy")
    before = p.api("GET", "/metrics").text
    for u in ups[:5]:
        u.healthy = False
    wait_until(lambda: list(upstream_states(p, "many").values()).count("unhealthy") == 5, timeout=20,
               what="five unhealthy")
    wait_until(lambda: set(served_by(p, "many.example.com")) == {"n5"}, timeout=20, what="traffic to n5 only")
    after = p.api("GET", "/metrics").text
    name = 'portico_health_engine_applies_total{result="success"}'
    transitions = _metric(after, "portico_health_transitions_total") - _metric(before, "portico_health_transitions_total")
    applies = _metric(after, name) - _metric(before, name)
    # Five transitions within a few hundred milliseconds: one reload for
    # the first window, at most one more two seconds later.
    assert transitions == 5
    assert 1 <= applies <= 2, (applies, transitions)


def test_list_and_metrics_show_health(portico, upstream):
    p = portico()
    good, bad = upstream("good"), upstream("bad")
    bad.healthy = False
    assert p.put_proxy("g", {"domain": "g.example.com", "upstream_host": "127.0.0.1", "upstream_port": good.port,
                             "health_check": FAST}).status == 201
    assert p.put_proxy("b", {"domain": "b.example.com", "upstream_host": "127.0.0.1", "upstream_port": bad.port,
                             "require_healthy": False, "health_check": FAST}).status == 201
    # A new route serves before any check: unknown counts as healthy.
    wait_until(lambda: {x["droplet_name"]: x["last_health_status"] for x in p.api("GET", "/proxies").json}
               == {"g": "healthy", "b": "unhealthy"}, timeout=20, what="both verdicts in the list")
    listed = p.api("GET", "/proxies").json
    for x in listed:
        assert x["last_health_checked_at"].endswith("Z")
        h = x["upstreams"][0]["health"]
        assert set(h) >= {"state", "last_status", "last_error", "checked_at", "consecutive"}
    m = p.api("GET", "/metrics")
    assert m.status == 200 and m.headers["content-type"].startswith("text/plain")
    text = m.text
    assert f'portico_upstream_healthy{{proxy="g",upstream="127.0.0.1:{good.port}"}} 1' in text
    assert f'portico_upstream_healthy{{proxy="b",upstream="127.0.0.1:{bad.port}"}} 0' in text
    assert 'portico_health_checks_total{result="success"}' in text
    assert 'portico_health_checks_total{result="bad_status"}' in text
    assert 'portico_proxies{source="api"} 2' in text
    assert "portico_revision 2" in text
    # Every sample line parses as Prometheus text: name{labels} value.
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name_labels, value = line.rsplit(" ", 1)
            float(value)
            assert name_labels[0].isalpha()


def test_verdicts_survive_a_restart(portico, upstream):
    p = portico()
    up = upstream("sick")
    assert p.put_proxy("sick", {"domain": "sick.example.com", "upstream_host": "127.0.0.1",
                                "upstream_port": up.port, "health_check": FAST}).status == 201
    up.healthy = False
    wait_until(lambda: p.api("GET", "/proxies/sick").json["last_health_status"] == "unhealthy", timeout=20,
               what="unhealthy")
    n_transitions = len([a for a in p.api("GET", "/audit").json if a["action"] == "health.transition"])
    p.restart()
    # Reported at once after the restart, and the route stays closed.
    r = p.api("GET", "/proxies/sick").json
    assert r["last_health_status"] == "unhealthy"
    assert r["upstreams"][0]["health"]["last_status"] == 503
    assert p.get("sick.example.com", "/").status == 503
    assert len([a for a in p.api("GET", "/audit").json if a["action"] == "health.transition"]) == n_transitions
    up.healthy = True
    wait_until(lambda: p.get("sick.example.com", "/").status == 200, timeout=20, what="re-admitted")


def test_checks_follow_the_desired_state(portico, upstream):
    p = portico()
    u1, u2 = upstream("u1"), upstream("u2")
    body = {"domain": "f.example.com", "upstream_host": "127.0.0.1", "upstream_port": u1.port, "health_check": FAST}
    assert p.put_proxy("f", body).status == 201
    wait_until(lambda: upstream_states(p, "f") == {u1.port: "healthy"}, timeout=20, what="u1 healthy")
    # A change that keeps the upstream keeps its verdict.
    body["path_prefix"] = "/v2"
    assert p.put_proxy("f", body).status == 200
    assert upstream_states(p, "f") == {u1.port: "healthy"}
    # Another upstream starts unknown and is checked.
    body["upstream_port"] = u2.port
    u2.healthy = False
    body["require_healthy"] = False
    assert p.put_proxy("f", body).status == 200
    wait_until(lambda: upstream_states(p, "f") == {u2.port: "unhealthy"}, timeout=20, what="u2 unhealthy")
    # u1 is no longer checked.
    seen = len([r for r in u1.paths() if r == "/health"])
    wait_until(lambda: len([r for r in u2.paths() if r == "/health"]) >= 8, timeout=20, what="u2 checked")
    assert len([r for r in u1.paths() if r == "/health"]) <= seen + 1
    assert p.api("DELETE", "/proxies/f").status == 200
    m = p.api("GET", "/metrics").text
    assert 'portico_health_targets{state="unhealthy"} 0' in m


class _Closed:
    """A port that refuses connections until reopen() serves it again."""

    def __init__(self):
        self.port = free_port()
        self.server = None

    def reopen(self, name):
        srv = ThreadingHTTPServer(("127.0.0.1", self.port), _UpstreamHandler)
        srv.daemon_threads = True
        up = Upstream.__new__(Upstream)
        up.name, up.health_path, up.healthy, up.status, up.requests = name, "/health", True, 200, []
        up._lock = threading.Lock()
        up.server, up.port = srv, self.port
        srv.upstream = up
        up.thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        up.thread.start()
        self.server = up
        return up

    def close(self):
        if self.server:
            self.server.close()


def test_passive_ejection(portico, upstream):
    p = portico()
    live = upstream("live")
    dead = _Closed()
    try:
        # Checks rarely: the data plane notices first.
        slow = dict(FAST, interval_ms=60000)
        body = {"domain": "px.example.com", "require_healthy": False, "health_check": slow,
                "upstreams": [{"host": "127.0.0.1", "port": live.port}, {"host": "127.0.0.1", "port": dead.port}]}
        assert p.put_proxy("px", body).status == 201
        # Requests that land on the refusing upstream fail (502) until three
        # failures in a row eject it; then every request goes to "live".
        wait_until(lambda: set(served_by(p, "px.example.com", n=6)) == {"live"}, timeout=30,
                   what="the refusing upstream ejected")
        got = p.api("GET", "/proxies/px").json
        h = next(u["health"] for u in got["upstreams"] if u["port"] == dead.port)
        assert h["state"] == "unhealthy" and h["passive"] is True
        rows = [json.loads(a["detail"]) for a in p.api("GET", "/audit").json if a["action"] == "health.transition"]
        assert any(d["passive"] and d["upstream"] == f"127.0.0.1:{dead.port}" for d in rows)
        m = p.api("GET", "/metrics").text
        assert "portico_health_passive_ejections_total 1" in m
        # It comes back only through the active checks: make them fast.
        body["health_check"] = FAST
        dead.reopen("back")
        assert p.put_proxy("px", body).status == 200
        wait_until(lambda: "back" in served_by(p, "px.example.com"), timeout=30, what="re-admitted")
    finally:
        dead.close()
