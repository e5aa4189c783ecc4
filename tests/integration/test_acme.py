"""Certificates from a real ACME CA (Pebble): POST /proxies/{name}/ssl on
every engine (builtin, nginx, caddy) with portico's own client and with
certbot (nginx), the HTTPS route that results (verified against Pebble's
root, with SNI) and the 301 from HTTP; renewal by the scheduler while a TLS
connection stays open; and the failures, after which nothing has changed."""

import hashlib
import json
import os
import sqlite3
import subprocess
import time

from conftest import BIN, free_port, proxy_body, wait_until
from pebble import https_connection, pebble, served_fingerprint  # noqa: F401  (pebble is a fixture)

DOMAIN = "orders.example.com"


def start_with_ca(portico, pebble, engine="builtin", settings=None, validity=None, pebble_env=None):
    """A portico whose HTTP listener is the port Pebble validates on."""
    p = portico(engine=engine, start=False)
    ca = pebble(p.http_port, validity=validity, env=pebble_env)
    p.settings.update(ca.settings())
    p.settings.update(settings or {})
    p.start()
    return p, ca


def account_key(db):
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return c.execute("SELECT value FROM kv WHERE key = 'acme.account_key'").fetchone()[0]


def audit(p, **match):
    rows = p.api("GET", "/audit?limit=1000").json
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def get_over_https(p, ca_root, domain=DOMAIN, path="/"):
    conn, _ = https_connection(p.https_port, domain, ca_root)
    try:
        conn.request("GET", path, headers={"Host": domain})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


def check_issued_and_served(p, ca, up, source, name="orders"):
    rev_before = p.api("GET", f"/proxies/{name}").json["revision"]
    r = p.api("POST", f"/proxies/{name}/ssl", body={"email": "admin@example.com"}, timeout=180)
    assert r.status == 200, r
    cert = r.json
    # Seed 000's SSLCertificate, and the rest.
    assert cert["domain"] == DOMAIN and cert["status"] == "active"
    assert cert["expiry"] and cert["issued_at"] and "Pebble" in cert["issuer"]
    assert cert["source"] == source and cert["issued"] is True
    assert cert["sans"] == [DOMAIN]
    assert "PRIVATE KEY" not in json.dumps(cert)

    root = ca.root_file()
    # HTTPS through the engine, verified against Pebble's root with SNI.
    status, body = wait_until(lambda: get_over_https(p, root), timeout=15, what="HTTPS through the engine")
    assert status == 200 and body["upstream"] == up.name
    assert served_fingerprint(p.https_port, DOMAIN, root) == cert["fingerprint_sha256"]
    # And plain HTTP is redirected.
    r = p.get(DOMAIN, "/x?y=1")
    assert r.status == 301, r
    assert r.headers["location"].startswith(f"https://{DOMAIN}")
    assert r.headers["location"].endswith("/x?y=1")

    proxy = p.api("GET", f"/proxies/{name}").json
    assert proxy["enable_ssl"] is True and proxy["ssl_enabled"] is True
    # Switching the route to HTTPS is a revision of its own.
    assert proxy["revision"] == rev_before + 1
    newest = p.api("GET", "/revisions").json[0]
    assert newest["revision"] == proxy["revision"] and newest["action"] == "proxy.ssl"
    certs = p.api("GET", "/certificates").json
    assert [(c["domain"], c["source"]) for c in certs] == [(DOMAIN, source)]
    assert certs[0]["used_by"] == [name]
    ok = audit(p, action="proxy.ssl", result="success", droplet_name=name)
    assert len(ok) == 1 and ok[0]["domain"] == DOMAIN
    return cert


def test_builtin_engine_builtin_client(portico, upstream, pebble):
    p, ca = start_with_ca(portico, pebble)
    up = upstream()
    assert p.put_proxy("orders", proxy_body(DOMAIN, up.port)).status == 201
    # Plain HTTP before: the route answers, no redirect.
    assert p.get(DOMAIN, "/").status == 200

    cert = check_issued_and_served(p, ca, up, "acme")

    # Asked again: the certificate is not due, so it is returned as is.
    r = p.api("POST", "/proxies/orders/ssl", body={})
    assert r.status == 200 and r.json["issued"] is False
    assert r.json["fingerprint_sha256"] == cert["fingerprint_sha256"]
    # force_renew: a new one, served at once.
    r = p.api("POST", "/proxies/orders/ssl", body={"force_renew": True}, timeout=180)
    assert r.status == 200 and r.json["issued"] is True
    assert r.json["fingerprint_sha256"] != cert["fingerprint_sha256"]
    root = ca.root_file()
    wait_until(lambda: served_fingerprint(p.https_port, DOMAIN, root) == r.json["fingerprint_sha256"], timeout=15,
               what="the new certificate served")
    # POST /certificates/{domain}/renew: another one.
    r2 = p.api("POST", f"/certificates/{DOMAIN}/renew", timeout=180)
    assert r2.status == 200 and r2.json["issued"] is True
    assert r2.json["fingerprint_sha256"] != r.json["fingerprint_sha256"]
    assert len(audit(p, action="certificate.renew", result="success")) == 1

    health = p.api("GET", "/proxy-manager/health").json
    assert health["status"] == "healthy", health
    assert health["ssl"]["by_source"]["acme"] == 1
    assert health["ssl"]["renewal"]["scheduled"] == 1
    assert health["ssl"]["renewal"]["failing"] == []
    assert health["ssl"]["renewal"]["next"]["domain"] == DOMAIN

    # The account key is in the store (0600), not in any answer or log
    # line, and the same key is used after a restart.
    assert "PRIVATE KEY" not in p.read_log()
    db = p.state_dir / "portico.db"
    assert os.stat(db).st_mode & 0o077 == 0
    key = account_key(db)
    assert key.startswith("-----BEGIN PRIVATE KEY-----")
    p.restart()
    assert get_over_https(p, root)[0] == 200  # the certificate came back from the store
    r3 = p.api("POST", "/proxies/orders/ssl", body={"force_renew": True}, timeout=180)
    assert r3.status == 200 and r3.json["issued"] is True
    assert account_key(db) == key


def test_enable_ssl_already_set(portico, upstream, pebble):
    # enable_ssl asked for at creation: HTTP serves until a certificate
    # exists; issuing it is then a certificate change, not a revision.
    p, ca = start_with_ca(portico, pebble)
    up = upstream()
    r = p.put_proxy("orders", proxy_body(DOMAIN, up.port, enable_ssl=True))
    assert r.status == 201 and r.json["ssl_enabled"] is False
    assert p.get(DOMAIN, "/").status == 200
    revisions = len(p.api("GET", "/revisions").json)
    r = p.api("POST", "/proxies/orders/ssl", body={}, timeout=180)
    assert r.status == 200 and r.json["issued"] is True, r
    assert len(p.api("GET", "/revisions").json) == revisions
    assert "revision" not in r.json["apply"]
    assert p.get(DOMAIN, "/").status == 301
    assert get_over_https(p, ca.root_file())[0] == 200


def test_nginx_engine_certbot(portico, upstream, pebble):
    p, ca = start_with_ca(portico, pebble, engine="nginx", settings={"acme_client": "certbot"})
    up = upstream()
    assert p.put_proxy("orders", proxy_body(DOMAIN, up.port)).status == 201
    check_issued_and_served(p, ca, up, "certbot")
    # certbot's lineage under the state folder, the key 0600.
    live = p.state_dir / "certbot" / "config" / "live" / DOMAIN
    assert (live / "fullchain.pem").exists()
    assert os.stat((live / "privkey.pem").resolve()).st_mode & 0o077 == 0


def test_nginx_engine_builtin_client(portico, upstream, pebble):
    p, ca = start_with_ca(portico, pebble, engine="nginx")
    up = upstream()
    assert p.put_proxy("orders", proxy_body(DOMAIN, up.port)).status == 201
    check_issued_and_served(p, ca, up, "acme")
    # The challenge file is gone from the webroot.
    well_known = p.state_dir / "acme-webroot" / ".well-known" / "acme-challenge"
    assert not well_known.exists() or list(well_known.iterdir()) == []


def test_caddy_engine_builtin_client(portico, upstream, pebble):
    p, ca = start_with_ca(portico, pebble, engine="caddy")
    up = upstream()
    assert p.put_proxy("orders", proxy_body(DOMAIN, up.port)).status == 201
    check_issued_and_served(p, ca, up, "acme")


def test_renewal_keeps_connections(portico, upstream, pebble):
    # 30-second certificates: due after 20 s (a third left, jitter < 1.5 s).
    p, ca = start_with_ca(portico, pebble, validity=30)
    up = upstream()
    assert p.put_proxy("orders", proxy_body(DOMAIN, up.port)).status == 201
    first = p.api("POST", "/proxies/orders/ssl", body={}, timeout=180)
    assert first.status == 200, first
    root = ca.root_file()

    # One TLS keep-alive connection, used every second across the renewal.
    conn, tls = https_connection(p.https_port, DOMAIN, root, timeout=30)
    seen = hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
    assert seen == first.json["fingerprint_sha256"]
    renewed = None
    deadline = time.monotonic() + 90
    while renewed is None and time.monotonic() < deadline:
        conn.request("GET", "/keep", headers={"Host": DOMAIN})
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["upstream"] == up.name
        now = served_fingerprint(p.https_port, DOMAIN, root)
        if now != first.json["fingerprint_sha256"]:
            renewed = now
        else:
            time.sleep(1)
    assert renewed is not None, "no renewal within 90 s"
    # The old connection still works after the swap.
    conn.request("GET", "/after", headers={"Host": DOMAIN})
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["path"] == "/after"
    conn.close()

    rows = audit(p, action="certificate.renew", actor="scheduler", result="success")
    assert rows and rows[0]["domain"] == DOMAIN
    cert = p.api("GET", f"/certificates/{DOMAIN}").json
    assert cert["fingerprint_sha256"] == renewed or cert["not_after"] > first.json["not_after"]


def test_renewal_failure_keeps_old_certificate_and_retries(portico, upstream, pebble):
    p, ca = start_with_ca(portico, pebble, validity=30)
    up = upstream()
    assert p.put_proxy("orders", proxy_body(DOMAIN, up.port)).status == 201
    first = p.api("POST", "/proxies/orders/ssl", body={}, timeout=180)
    assert first.status == 200, first
    root = ca.root_file()
    ca.stop_ca()

    failures = wait_until(lambda: audit(p, action="certificate.renew", actor="scheduler", result="failure"),
                          timeout=60, interval=0.5, what="a failed renewal")
    assert failures[0]["error_code"] == "SSL_ISSUANCE_FAILED"
    health = p.api("GET", "/proxy-manager/health")
    assert health.status == 200 and health.json["status"] == "degraded", health
    ssl_ = health.json["ssl"]
    assert ssl_["last_failure"]["domain"] == DOMAIN and "SSL_ISSUANCE_FAILED" in ssl_["last_failure"]["error"]
    failing = ssl_["renewal"]["failing"]
    assert len(failing) == 1 and failing[0]["domain"] == DOMAIN and failing[0]["failures"] == 1
    # The retry is scheduled a minute after the attempt (back-off).
    assert failing[0]["next_attempt"] > failing[0]["last_attempt"]
    # The old certificate keeps serving.
    assert served_fingerprint(p.https_port, DOMAIN, root) == first.json["fingerprint_sha256"]
    assert get_over_https(p, root)[0] == 200


def assert_nothing_changed(p, name="orders"):
    proxy = p.api("GET", f"/proxies/{name}").json
    assert proxy["enable_ssl"] is False and proxy["ssl_enabled"] is False
    assert p.api("GET", "/certificates").json == []
    assert p.get(DOMAIN, "/").status == 200  # still plain HTTP, no redirect


def test_ca_unreachable(portico, upstream, pebble):
    p, ca = start_with_ca(portico, pebble)
    up = upstream()
    assert p.put_proxy("orders", proxy_body(DOMAIN, up.port)).status == 201
    ca.stop_ca()
    r = p.api("POST", "/proxies/orders/ssl", body={}, timeout=180)
    assert r.status == 500 and r.error_code == "SSL_ISSUANCE_FAILED", r
    d = r.json["error"]["details"]
    assert d["stage"] == "directory" and d["domain"] == DOMAIN and d["client"] == "builtin"
    assert d["url"] == ca.directory_url
    assert_nothing_changed(p)
    rows = audit(p, action="proxy.ssl", result="failure")
    assert rows and rows[0]["error_code"] == "SSL_ISSUANCE_FAILED"


def test_challenge_unreachable(portico, upstream, pebble):
    # Pebble validates on a port where nothing listens.
    p = portico(start=False)
    ca = pebble(free_port())
    p.settings.update(ca.settings())
    p.start()
    up = upstream()
    assert p.put_proxy("orders", proxy_body(DOMAIN, up.port)).status == 201
    r = p.api("POST", "/proxies/orders/ssl", body={}, timeout=180)
    assert r.status == 500 and r.error_code == "SSL_ISSUANCE_FAILED", r
    d = r.json["error"]["details"]
    assert d["stage"] == "challenge"
    assert d["problem"]["type"] == "urn:ietf:params:acme:error:connection", d
    assert d["problem"]["detail"]
    assert_nothing_changed(p)


def test_certbot_failure_reports_its_output(portico, upstream, pebble):
    p = portico(engine="nginx", start=False)
    ca = pebble(free_port())
    p.settings.update(ca.settings())
    p.settings["acme_client"] = "certbot"
    p.start()
    up = upstream()
    assert p.put_proxy("orders", proxy_body(DOMAIN, up.port)).status == 201
    r = p.api("POST", "/proxies/orders/ssl", body={}, timeout=180)
    assert r.status == 500 and r.error_code == "SSL_ISSUANCE_FAILED", r
    d = r.json["error"]["details"]
    assert d["stage"] == "certbot" and d["client"] == "certbot" and d["exit_code"] != 0
    assert DOMAIN in d["output"] and "connection" in d["output"].lower()
    assert_nothing_changed(p)


def test_requests_refused(portico, upstream):
    p = portico()
    up = upstream()
    assert p.put_proxy("orders", proxy_body(DOMAIN, up.port)).status == 201
    assert p.put_proxy("wild", proxy_body("*.example.net", up.port)).status == 201
    assert p.put_proxy("intranet", proxy_body("intranet", up.port)).status == 201

    r = p.api("POST", "/proxies/nope/ssl", body={})
    assert r.status == 404 and r.error_code == "PROXY_NOT_FOUND"
    r = p.api("POST", "/proxies/wild/ssl", body={})
    assert r.status == 400 and r.error_code == "INVALID_DOMAIN" and "wildcard" in r.json["error"]["details"]["fields"]["domain"]
    r = p.api("POST", "/proxies/intranet/ssl", body={})
    assert r.status == 400 and r.error_code == "INVALID_DOMAIN"
    for body, field in [({"emial": "a@b.c"}, "emial"), ({"email": "not an email"}, "email"),
                        ({"force_renew": "yes"}, "force_renew"), ({"email": 5}, "email")]:
        r = p.api("POST", "/proxies/orders/ssl", body=body)
        assert r.status == 400 and r.error_code == "INVALID_CONFIG", r
        assert field in r.json["error"]["details"]["fields"]
    r = p.api("POST", "/proxies/orders/ssl", raw_body=b"[1]", headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.error_code == "INVALID_JSON"
    r = p.api("POST", f"/certificates/{DOMAIN}/renew")
    assert r.status == 404 and r.error_code == "CERTIFICATE_NOT_FOUND"
    r = p.api("GET", "/proxies/orders/ssl")
    assert r.status == 405
    assert_nothing_changed(p)
    assert len(audit(p, action="proxy.ssl", result="failure")) == 8


def test_certbot_needs_a_webroot_engine(portico, upstream):
    # certbot answers HTTP-01 from acme_webroot, which the builtin engine
    # does not serve: refused before certbot runs, nothing changed.
    p = portico(settings={"acme_client": "certbot", "certbot_bin": "/nonexistent/certbot"})
    up = upstream()
    assert p.put_proxy("orders", proxy_body(DOMAIN, up.port)).status == 201
    r = p.api("POST", "/proxies/orders/ssl", body={})
    assert r.status == 500 and r.error_code == "SSL_ISSUANCE_FAILED", r
    assert r.json["error"]["details"]["stage"] == "certbot"
    assert "acme_webroot" in r.json["error"]["message"]
    assert_nothing_changed(p)


def test_cli(portico, upstream, pebble):
    p, ca = start_with_ca(portico, pebble)
    up = upstream()
    assert p.put_proxy("orders", proxy_body(DOMAIN, up.port)).status == 201
    env = dict(os.environ, PORTICO_URL=f"http://127.0.0.1:{p.api_port}")

    def cli(*args):
        return subprocess.run([BIN, *args], env=env, capture_output=True, text=True, timeout=240)

    r = cli("ssl", "issue", "orders", "--email=ops@example.com", "--json")
    assert r.returncode == 0, r.stderr
    issued = json.loads(r.stdout)
    assert issued["domain"] == DOMAIN and issued["issued"] is True
    r = cli("ssl", "list")
    assert r.returncode == 0 and DOMAIN in r.stdout and "acme" in r.stdout
    r = cli("ssl", "renew", DOMAIN)
    assert r.returncode == 0, r.stderr
    assert "issued" in r.stdout and "yes" in r.stdout
    r = cli("ssl", "issue", "nope")
    assert r.returncode == 1 and "PROXY_NOT_FOUND" in r.stderr
    r = cli("ssl", "frobnicate")
    assert r.returncode == 2
