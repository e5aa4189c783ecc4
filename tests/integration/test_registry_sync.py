"""Registry sync (DESIGN §6, §9; seed 000/001): GET /proxy-manager/sync-from-registry
against a real registry served by a Python HTTP server started here.  What
it creates, updates, skips (with reasons) and prunes; that a sync is one
revision and a repeated one none; and every way the registry can fail
(down, malformed, huge, silent) answering 500 REGISTRY_UNAVAILABLE while
nothing changes and the rest of the API keeps answering."""

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import BIN, free_port, wait_until


class _RegistryHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        reg = self.server.registry
        reg.hits += 1
        if self.path != "/droplets":
            self.send_error(404)
            return
        if reg.hang:
            # Holds the request until the test lets go (bounded).
            reg.release.wait(timeout=60)
            return
        if reg.huge:
            # 10 MB of a valid-looking JSON array, streamed without a length.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = (b'{"name": "x", "domain": "x.example.com", "host": "10.0.0.1", "port": 80},' * 1000)
            try:
                self._chunk(b"[")
                sent = 0
                while sent < 10 * 1024 * 1024:
                    self._chunk(chunk)
                    sent += len(chunk)
                self._chunk(b'{"name": "y"}]')
                self._chunk(b"")
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        body = reg.raw if reg.raw is not None else json.dumps(reg.droplets).encode()
        self.send_response(reg.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


class Registry:
    """A registry answering GET /droplets with `droplets` (or `raw` bytes,
    a `status`, a 10 MB body when `huge`, nothing at all when `hang`)."""

    def __init__(self):
        self.droplets = []
        self.raw = None
        self.status = 200
        self.huge = False
        self.hang = False
        self.release = threading.Event()
        self.hits = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _RegistryHandler)
        self.server.daemon_threads = True
        self.server.registry = self
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def registry():
    made = []

    def make():
        r = Registry()
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def sync(p, **kw):
    return p.api("GET", "/proxy-manager/sync-from-registry", **kw)


def revision_count(p):
    return len(p.api("GET", "/revisions?limit=100000").json)


def proxies_by_name(p):
    return {x["droplet_name"]: x for x in p.api("GET", "/proxies").json}


def droplet(name, port, **extra):
    d = {"name": name, "host": "127.0.0.1", "port": port}
    d.update(extra)
    return d


def test_sync_creates_updates_and_skips(portico, upstream, registry):
    reg = registry()
    up_a, up_b, up_e1, up_e2 = upstream("a"), upstream("b"), upstream("e1"), upstream("e2")
    p = portico(settings={"registry_url": reg.url, "base_domain": "apps.example.com"})
    # A manual proxy: its name is never taken over, its domain never stolen.
    r = p.put_proxy("manual", {"domain": "manual.example.com", "upstream_port": up_a.port,
                               "upstream_host": "127.0.0.1"})
    assert r.status == 201
    reg.droplets = [
        droplet("alpha", up_a.port, domain="Alpha.Example.com", health_path="/health", enable_ssl=False),
        {"name": "beta", "upstream_host": "127.0.0.1", "upstream_port": str(up_b.port)},  # no domain: base_domain
        {"name": "gamma", "ip": "127.0.0.1", "port": 70000, "domain": "gamma.example.com"},
        droplet("manual", up_b.port, domain="other.example.com"),
        droplet("thief", up_b.port, domain="manual.example.com"),
        {"name": "epsilon", "domain": "eps.example.com",
         "instances": [{"host": "127.0.0.1", "port": up_e1.port, "healthy": True},
                       {"host": "127.0.0.1", "port": up_e2.port},
                       {"host": "127.0.0.1", "port": 1, "healthy": False}]},
        {"domain": "nameless.example.com", "host": "127.0.0.1", "port": 1},
        {"name": "Bad Name", "host": "127.0.0.1", "port": 1},
        "not an object",
    ]
    before = revision_count(p)
    r = sync(p, headers={"X-Request-ID": "sync-1"})
    assert r.status == 200, r
    res = r.json
    assert sorted(res["synced"]) == ["alpha", "beta", "epsilon"]
    assert res["synced_count"] == 3
    assert sorted(res["changes"]["created"]) == ["alpha", "beta", "epsilon"]
    assert res["changes"]["updated"] == [] and res["changes"]["deleted"] == []
    assert res["changed"] is True
    reasons = res["skipped_reasons"]
    assert set(res["skipped"]) == set(reasons)
    assert res["skipped_count"] == len(res["skipped"]) == 6
    assert "port" in reasons["gamma"]
    assert reasons["manual"] == "the name belongs to a proxy made through the API"
    assert "routed by the manual proxy manual" in reasons["thief"]
    assert reasons["droplets[6]"] == "no name"
    assert "name must match" in reasons["Bad Name"]
    assert reasons["droplets[8]"] == "not a JSON object"
    # One sync, one revision.
    assert revision_count(p) == before + 1
    assert res["revision"] == p.api("GET", "/revisions?limit=1").json[0]["revision"]

    got = proxies_by_name(p)
    assert got["alpha"]["domain"] == "alpha.example.com"
    assert got["alpha"]["source"] == "registry" and got["alpha"]["require_healthy"] is False
    assert got["beta"]["domain"] == "beta.apps.example.com"
    assert got["beta"]["upstream_port"] == up_b.port
    assert sorted(u["port"] for u in got["epsilon"]["upstreams"]) == sorted([up_e1.port, up_e2.port])
    assert got["manual"]["source"] == "api" and got["manual"]["domain"] == "manual.example.com"
    assert "gamma" not in got and "thief" not in got

    # The routes serve at once (builtin engine), to the registry's upstreams.
    assert p.get("alpha.example.com", "/x").headers["x-upstream"] == "a"
    assert p.get("beta.apps.example.com", "/x").headers["x-upstream"] == "b"
    assert p.get("eps.example.com", "/x").headers["x-upstream"] in ("e1", "e2")

    audit = [a for a in p.api("GET", "/audit").json if a["correlation_id"] == "sync-1"]
    assert audit and audit[-1]["action"] == "registry.sync" and audit[-1]["result"] == "success"


def test_second_sync_changes_nothing_and_updates_apply(portico, upstream, registry):
    reg = registry()
    up = upstream()
    p = portico(settings={"registry_url": reg.url})
    reg.droplets = [droplet("one", up.port, domain="one.example.com"),
                    droplet("two", up.port, domain="two.example.com")]
    assert sync(p).json["changed"] is True
    revs = revision_count(p)
    r = sync(p)
    assert r.status == 200 and r.json["changed"] is False
    assert sorted(r.json["changes"]["unchanged"]) == ["one", "two"]
    assert r.json["changes"]["created"] == [] and r.json["changes"]["updated"] == []
    assert revision_count(p) == revs
    audit = p.api("GET", "/audit").json
    assert audit[-1]["action"] == "registry.sync" and audit[-1]["result"] == "unchanged"

    # The registry moves one droplet: an update, one more revision.
    reg.droplets[0] = droplet("one", up.port, domain="one.example.com", health_path="/ready")
    r = sync(p)
    assert r.json["changes"]["updated"] == ["one"] and r.json["changes"]["unchanged"] == ["two"]
    assert revision_count(p) == revs + 1
    assert proxies_by_name(p)["one"]["health_check"]["path"] == "/ready"
    # A droplet that left the registry stays without registry_prune.
    reg.droplets = reg.droplets[:1]
    r = sync(p)
    assert r.json["changes"]["deleted"] == [] and "two" in proxies_by_name(p)


def test_prune_removes_registry_proxies_only(portico, upstream, registry):
    reg = registry()
    up = upstream()
    p = portico(settings={"registry_url": reg.url, "registry_prune": "true"})
    assert p.put_proxy("hand", {"domain": "hand.example.com", "upstream_host": "127.0.0.1",
                                "upstream_port": up.port}).status == 201
    reg.droplets = [droplet("keep", up.port, domain="keep.example.com"),
                    droplet("gone", up.port, domain="gone.example.com"),
                    droplet("broken", up.port, domain="broken.example.com")]
    assert sorted(sync(p).json["changes"]["created"]) == ["broken", "gone", "keep"]
    revs = revision_count(p)
    # "gone" leaves; "broken" is still listed but invalid now: skipped, kept.
    reg.droplets = [droplet("keep", up.port, domain="keep.example.com"),
                    {"name": "broken", "domain": "broken.example.com", "port": up.port}]
    r = sync(p)
    assert r.status == 200, r
    assert r.json["changes"]["deleted"] == ["gone"]
    assert r.json["skipped"] == ["broken"] and "host" in r.json["skipped_reasons"]["broken"]
    assert revision_count(p) == revs + 1
    names = proxies_by_name(p)
    assert sorted(names) == ["broken", "hand", "keep"]
    assert p.get("gone.example.com", "/").status == 404
    # An empty registry prunes every registry proxy, never a manual one.
    reg.droplets = []
    r = sync(p)
    assert sorted(r.json["changes"]["deleted"]) == ["broken", "keep"]
    assert sorted(proxies_by_name(p)) == ["hand"]


def _assert_unavailable(p, cause, before):
    r = sync(p)
    assert r.status == 500, r
    assert r.error_code == "REGISTRY_UNAVAILABLE"
    assert r.json["error"]["details"]["cause"] == cause, r
    assert r.json["error"]["details"]["reason"]
    assert proxies_by_name(p) == before["proxies"]
    assert revision_count(p) == before["revisions"]
    last = p.api("GET", "/audit").json[-1]
    assert last["action"] == "registry.sync" and last["result"] == "failure"
    assert last["error_code"] == "REGISTRY_UNAVAILABLE"
    return r


def _snapshot(p):
    return {"proxies": proxies_by_name(p), "revisions": revision_count(p)}


def test_registry_failures_change_nothing(portico, upstream, registry):
    reg = registry()
    up = upstream()
    p = portico(settings={"registry_url": reg.url, "registry_prune": "true", "registry_timeout_ms": "2000"})
    reg.droplets = [droplet("live", up.port, domain="live.example.com")]
    assert sync(p).status == 200
    before = _snapshot(p)

    reg.raw = b'[{"name": "live", "domain": "live.example.com", '
    _assert_unavailable(p, "malformed", before)
    reg.raw = b'{"not": "a list"}'
    _assert_unavailable(p, "malformed", before)
    reg.raw = None
    reg.status = 503
    _assert_unavailable(p, "bad_status", before)
    reg.status = 200
    reg.huge = True
    r = _assert_unavailable(p, "too_large", before)
    assert "larger than" in r.json["error"]["details"]["reason"]
    reg.huge = False
    # Down: nothing listens any more.
    reg.close()
    r = _assert_unavailable(p, "unreachable", before)
    assert r.json["error"]["details"]["registry_url"] == reg.url
    # The route still serves.
    assert p.get("live.example.com", "/").status == 200


def test_registry_url_unset(portico):
    p = portico()
    r = sync(p)
    assert r.status == 500 and r.error_code == "REGISTRY_UNAVAILABLE"
    assert r.json["error"]["details"]["cause"] == "not_configured"


def test_registry_user_info_is_not_shown(portico):
    port = free_port()
    p = portico(settings={"registry_url": f"http://reader:hunter2@127.0.0.1:{port}"})
    r = sync(p)
    assert r.status == 500
    assert "hunter2" not in r.text
    assert r.json["error"]["details"]["registry_url"] == f"http://***@127.0.0.1:{port}"


def test_silent_registry_times_out_and_the_api_keeps_answering(portico, upstream, registry):
    reg = registry()
    up = upstream()
    p = portico(settings={"registry_url": reg.url, "registry_timeout_ms": "8000"})
    assert p.put_proxy("steady", {"domain": "steady.example.com", "upstream_host": "127.0.0.1",
                                  "upstream_port": up.port}).status == 201
    reg.hang = True
    result = {}

    def run():
        result["r"] = sync(p)

    t = threading.Thread(target=run)
    t.start()
    wait_until(lambda: reg.hits >= 1, timeout=10, what="the sync to reach the registry")
    # While the sync waits on the registry, other calls answer, a change too.
    assert t.is_alive()
    assert p.api("GET", "/proxies", timeout=10).status == 200
    assert p.api("GET", "/proxies/steady", timeout=10).status == 200
    assert p.put_proxy("other", {"domain": "other.example.com", "upstream_host": "127.0.0.1",
                                 "upstream_port": up.port}, timeout=10).status == 201
    assert t.is_alive(), "the sync should still be waiting for the registry"
    t.join(timeout=60)
    reg.release.set()
    r = result["r"]
    assert r.status == 500 and r.error_code == "REGISTRY_UNAVAILABLE"
    assert r.json["error"]["details"]["cause"] == "timeout"
    assert sorted(proxies_by_name(p)) == ["other", "steady"]


def test_stop_during_a_sync_is_clean(portico, registry):
    """SIGTERM while an API sync waits on a silent registry: the fetch is
    cancelled and portico stops cleanly (the sync's state outlives the call
    that uses it; it was freed before the API's threads were joined)."""
    reg = registry()
    p = portico(settings={"registry_url": reg.url, "registry_timeout_ms": "20000"})
    reg.hang = True
    result = {}

    def run():
        try:
            result["r"] = sync(p, timeout=30)
        except OSError as e:  # the connection may close under the stop
            result["r"] = e

    t = threading.Thread(target=run)
    t.start()
    wait_until(lambda: reg.hits >= 1, timeout=10, what="the sync to reach the registry")
    assert p.stop(timeout=20) == 0
    t.join(timeout=30)
    reg.release.set()


def test_thousand_droplets_one_revision(portico, upstream, registry):
    reg = registry()
    up = upstream()
    p = portico(settings={"registry_url": reg.url, "base_domain": "fleet.example.com"})
    reg.droplets = [droplet(f"svc-{i:04d}", up.port) for i in range(1000)]
    before = revision_count(p)
    r = sync(p, timeout=300)
    assert r.status == 200, r
    assert r.json["synced_count"] == 1000 and len(r.json["changes"]["created"]) == 1000
    assert revision_count(p) == before + 1
    listed = p.api("GET", "/proxies").json
    assert len(listed) == 1000 and all(x["source"] == "registry" for x in listed)
    assert p.get("svc-0999.fleet.example.com", "/").status == 200
    # Again: nothing.
    r = sync(p, timeout=300)
    assert r.json["changed"] is False and len(r.json["changes"]["unchanged"]) == 1000
    assert revision_count(p) == before + 1


def test_periodic_sync(portico, upstream, registry):
    reg = registry()
    up = upstream()
    reg.droplets = [droplet("auto", up.port, domain="auto.example.com")]
    p = portico(settings={"registry_url": reg.url, "registry_sync_interval": "1"})
    wait_until(lambda: "auto" in proxies_by_name(p), timeout=30, what="the periodic sync")
    reg.droplets.append(droplet("later", up.port, domain="later.example.com"))
    wait_until(lambda: "later" in proxies_by_name(p), timeout=30, what="the next periodic sync")
    runs = [a for a in p.api("GET", "/audit").json if a["action"] == "registry.sync"]
    assert runs and all(a["actor"] == "registry-sync" for a in runs)
    assert any(a["result"] == "success" for a in runs)
    # Runs that find nothing new are audited too, without a revision.
    revs = revision_count(p)
    n = len(runs)
    wait_until(lambda: len([a for a in p.api("GET", "/audit").json if a["action"] == "registry.sync"]) > n + 1,
               timeout=30, what="more periodic syncs")
    assert revision_count(p) == revs
    metrics = p.api("GET", "/metrics").text
    assert 'portico_registry_syncs_total{result="unchanged"}' in metrics


def test_cli_sync(portico, upstream, registry):
    reg = registry()
    up = upstream()
    p = portico(settings={"registry_url": reg.url})
    reg.droplets = [droplet("cli", up.port, domain="cli.example.com"), {"name": "nohost", "domain": "n.example.com"}]
    env = {"PORTICO_URL": f"http://127.0.0.1:{p.api_port}", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([BIN, "sync"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "created" in r.stdout and "cli" in r.stdout and "nohost" in r.stdout
    r = subprocess.run([BIN, "sync", "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["changes"]["unchanged"] == ["cli"]
    reg.status = 500
    r = subprocess.run([BIN, "sync"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and "REGISTRY_UNAVAILABLE" in r.stderr
