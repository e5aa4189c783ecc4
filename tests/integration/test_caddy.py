"""The caddy engine against Debian's Caddy, started and supervised by
portico (caddy_managed = true): create, update, delete, traffic, routing
that matches the builtin engine, TLS with an HTTP->HTTPS redirect, a
configuration Caddy refuses at load time (rolled back, the old routes
still serve), restart of a Caddy that died, and reconciliation at start.

The refused configuration is a certificate whose key lies on the
secp256k1 curve: OpenSSL, and so portico's validation, accepts it; Go's
crypto/x509, and so Caddy, refuses it when the config is loaded ("x509:
unsupported elliptic curve")."""

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
from collections import Counter

import pytest

from conftest import free_port, proxy_body, wait_until


@pytest.fixture
def caddy_portico(portico):
    """portico with engine caddy: the harness makes it caddy_managed with
    an admin port of its own."""
    def make(**settings):
        return portico(engine="caddy", settings=settings)
    return make


def body_of(r):
    assert r.json is not None, r
    return r.json


def self_signed(tmp_path, domain, curve):
    key, crt = tmp_path / f"{domain}.key", tmp_path / f"{domain}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{curve}", "-nodes",
                    "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", f"/CN={domain}",
                    "-addext", f"subjectAltName=DNS:{domain}"], check=True, capture_output=True, timeout=60)
    return crt.read_text(), key.read_text()


def https_get(port, host, path):
    """GET over TLS to 127.0.0.1:port with SNI and Host set to host (the
    chain is not checked: the certificate is self-signed)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname=host)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def test_create_update_delete_and_traffic(caddy_portico, upstream):
    p = caddy_portico()
    a, b = upstream("a"), upstream("b")

    r = p.put_proxy("api", proxy_body("app.test", a.port, path_prefix="/api", strip_prefix=True))
    assert r.status == 201, r
    assert r.json["apply"]["engine"] == "caddy"
    assert r.json["apply"]["verify"]["ok"] is True, r.json["apply"]

    got = p.get("app.test", "/api/x?q=1")
    assert got.status == 200 and got.json["upstream"] == "a"
    assert got.json["path"] == "/x?q=1"
    h = got.json["headers"]
    assert h["x-forwarded-for"] == "127.0.0.1" and h["x-real-ip"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http" and h["x-forwarded-port"] == str(p.http_port)
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["x-frame-options"] == "SAMEORIGIN"
    assert p.get("app.test", "/api").json["path"] == "/"
    # Segment boundaries, the unknown host and the unknown path: 404 JSON.
    for host, path in (("app.test", "/apix"), ("app.test", "/"), ("nobody.test", "/api/x")):
        miss = p.get(host, path)
        assert (miss.status, miss.error_code) == (404, "ROUTE_NOT_FOUND"), (host, path, miss)

    assert p.put_proxy("root", proxy_body("app.test", b.port)).status == 201
    assert p.get("app.test", "/elsewhere").json["upstream"] == "b"
    assert p.get("app.test", "/api/x").json["upstream"] == "a"  # the longer prefix wins

    r = p.put_proxy("api", proxy_body("app.test", b.port, path_prefix="/api", strip_prefix=True,
                                      security_headers=False))
    assert r.status == 200, r
    got = p.get("app.test", "/api/y")
    assert got.json["upstream"] == "b" and got.json["path"] == "/y"
    assert "x-frame-options" not in got.headers

    r = p.api("DELETE", "/proxies/api")
    assert r.status == 200, r
    got = p.get("app.test", "/api/y")
    assert got.json["upstream"] == "b" and got.json["path"] == "/api/y"  # now the root route's
    r = p.api("DELETE", "/proxies/root")
    assert r.status == 200 and r.json["apply"]["verify"]["ok"] is True, r
    assert p.get("app.test", "/").error_code == "ROUTE_NOT_FOUND"

    health = p.api("GET", "/proxy-manager/health")
    assert health.status == 200, health
    caddy = health.json["caddy"]
    assert caddy["present"] and caddy["admin_reachable"] and caddy["managed"]
    installed = subprocess.run(["caddy", "version"], capture_output=True, text=True, timeout=30).stdout.split()[0]
    assert caddy["version"] == installed
    assert caddy["last_load_ok"] is True and caddy["in_sync"] is True


def test_wildcards_and_weights(caddy_portico, upstream):
    p = caddy_portico()
    a, b, c = upstream("a"), upstream("b"), upstream("c")
    assert p.put_proxy("wild", proxy_body("*.w.test", c.port)).status == 201
    body = {"domain": "lb.w.test", "upstreams": [{"host": "127.0.0.1", "port": a.port, "weight": 2},
                                                 {"host": "127.0.0.1", "port": b.port, "weight": 6}]}
    assert p.put_proxy("lb", body).status == 201
    # A wildcard covers any number of labels; the exact name comes first.
    assert p.get("x.w.test").json["upstream"] == "c"
    assert p.get("deep.er.w.test").json["upstream"] == "c"
    assert p.get("w.test").error_code == "ROUTE_NOT_FOUND"
    seen = Counter(p.get("lb.w.test", "/n").json["upstream"] for _ in range(40))
    assert seen == Counter({"a": 10, "b": 30})


def test_tls_and_redirect(caddy_portico, upstream, tmp_path):
    p = caddy_portico()
    up = upstream("secure")
    chain, key = self_signed(tmp_path, "secure.test", "prime256v1")
    assert p.api("PUT", "/certificates/secure.test", body={"certificate": chain, "key": key}).status == 201
    r = p.put_proxy("secure", proxy_body("secure.test", up.port, enable_ssl=True))
    assert r.status == 201, r
    assert r.json["ssl_enabled"] is True
    assert r.json["apply"]["verify"]["ok"] is True, r.json["apply"]

    plain = p.get("secure.test", "/login?next=%2F")
    assert plain.status == 301
    assert plain.headers["location"] == f"https://secure.test:{p.https_port}/login?next=%2F"
    status, headers, data = https_get(p.https_port, "secure.test", "/login")
    assert status == 200 and b'"upstream": "secure"' in data
    assert headers["x-content-type-options"] == "nosniff"
    served = [r for r in up.requests if r["path"] != "/health"]  # health checks aside
    assert served[-1]["headers"]["x-forwarded-proto"] == "https"


def test_refused_config_rolls_back(caddy_portico, upstream, tmp_path):
    p = caddy_portico()
    up = upstream("kept")
    assert p.put_proxy("kept", proxy_body("kept.test", up.port)).status == 201
    chain, key = self_signed(tmp_path, "bad.test", "secp256k1")

    r = p.api("PUT", "/certificates/bad.test", body={"certificate": chain, "key": key})
    assert (r.status, r.error_code) == (500, "CADDY_LOAD_FAILED"), r
    details = r.json["error"]["details"]
    assert "unsupported elliptic curve" in details["caddy"]
    assert details["rolled_back"] is True
    # Nothing was committed, and Caddy still serves the old routes.
    assert p.api("GET", "/certificates/bad.test").status == 404
    assert p.get("kept.test", "/still").json["upstream"] == "kept"
    health = p.api("GET", "/proxy-manager/health").json["caddy"]
    assert health["last_load_ok"] is False and "elliptic" in health["last_error"]
    assert health["in_sync"] is True and health["last_rollback_at"]
    audit = [e for e in p.api("GET", "/audit").json if e["action"] == "certificate.put"]
    assert [(e["result"], e["error_code"]) for e in audit] == [("failure", "CADDY_LOAD_FAILED")]

    # The next change goes through as usual.
    assert p.put_proxy("more", proxy_body("more.test", up.port)).status == 201
    assert p.get("more.test").json["upstream"] == "kept"
    assert p.api("GET", "/proxy-manager/health").json["caddy"]["last_load_ok"] is True


def test_restart_after_death_and_reconciliation(caddy_portico, upstream):
    p = caddy_portico()
    up = upstream("life")
    assert p.put_proxy("life", proxy_body("life.test", up.port)).status == 201
    pid = p.api("GET", "/proxy-manager/health").json["caddy"]["pid"]
    assert pid

    os.kill(pid, signal.SIGKILL)  # the Caddy this test's portico started
    wait_until(lambda: p.api("GET", "/proxy-manager/health").json["caddy"]["restarts"] == 1, timeout=30,
               what="caddy restarted")
    wait_until(lambda: p.get("life.test").status == 200, timeout=30, what="routes served again")
    new_pid = p.api("GET", "/proxy-manager/health").json["caddy"]["pid"]
    assert new_pid and new_pid != pid
    # The Caddy portico runs logs JSON lines to caddy.log, which Caddy
    # rolls itself; what it prints before its config is loaded goes to
    # caddy.out.
    logs = p.state_dir / "caddy"
    wait_until(lambda: (logs / "caddy.log").exists() and (logs / "caddy.log").stat().st_size > 0, timeout=10,
               what="caddy.log written")
    first = (logs / "caddy.log").read_text().splitlines()[0]
    assert json.loads(first)["logger"]
    assert (logs / "caddy.out").exists()

    # portico stops its Caddy when it stops, and a new portico serves the
    # stored routes from the start.
    p.stop()
    wait_until(lambda: not os.path.exists(f"/proc/{new_pid}") or
               open(f"/proc/{new_pid}/stat").read().split()[2] == "Z", timeout=30, what="caddy stopped")
    p.start()
    assert p.get("life.test").json["upstream"] == "life"
    assert p.api("GET", "/proxy-manager/health").json["caddy"]["in_sync"] is True


def drift_repairs(p):
    return sum(r.get("msg") == "caddy: the running config is not portico's; loading the stored state"
               for r in p.log_records())


def test_unmanaged_caddy_drift_is_repaired(portico, upstream, tmp_path):
    """caddy_managed = false: portico drives a Caddy it did not start.  A
    config edited by hand in that Caddy is replaced by the stored state at
    start, and portico leaves that Caddy running when it stops."""
    admin = free_port()
    p = portico(engine="caddy", settings={"caddy_admin": f"127.0.0.1:{admin}", "caddy_managed": "false"},
                start=False)
    home = tmp_path / "caddy-home"
    for sub in ("home", "config", "data"):
        (home / sub).mkdir(parents=True)
    config = {"admin": {"listen": f"127.0.0.1:{admin}"}, "apps": {"http": {"servers": {"hand": {
        "listen": [f"127.0.0.1:{p.http_port}"],
        "routes": [{"handle": [{"handler": "static_response", "body": "edited by hand"}]}]}}}}}
    (home / "hand.json").write_text(json.dumps(config))
    env = dict(os.environ, HOME=str(home / "home"), XDG_CONFIG_HOME=str(home / "config"),
               XDG_DATA_HOME=str(home / "data"))
    with open(home / "caddy.log", "wb") as log:
        caddy = subprocess.Popen(["caddy", "run", "--config", str(home / "hand.json")], stdout=log,
                                 stderr=subprocess.STDOUT, env=env)
    try:
        wait_until(lambda: p.get("any.test").text == "edited by hand", timeout=30, what="the hand-made Caddy")
        p.start()
        miss = p.get("any.test")
        assert (miss.status, miss.error_code) == (404, "ROUTE_NOT_FOUND")
        assert drift_repairs(p) == 1
        up = upstream("unmanaged")
        assert p.put_proxy("u", proxy_body("u.test", up.port)).status == 201
        assert p.get("u.test").json["upstream"] == "unmanaged"
        health = p.api("GET", "/proxy-manager/health").json["caddy"]
        assert health["managed"] is False and health["pid"] is None and health["admin_reachable"] is True

        # A restart finds the running config equal to the stored state.
        p.restart()
        assert drift_repairs(p) == 1
        assert p.get("u.test").json["upstream"] == "unmanaged"
        p.stop()
        assert caddy.poll() is None  # not portico's to stop
        assert p.get("u.test").json["upstream"] == "unmanaged"
    finally:
        caddy.terminate()
        caddy.wait(timeout=30)
