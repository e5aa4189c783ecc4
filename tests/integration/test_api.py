"""The admin API's contract (DESIGN §2): status codes, validation, the
error shape, correlation ids, authentication, the audit trail, revisions
and health gating, on every engine."""

import json
import subprocess

import pytest

from conftest import BIN, http_request, proxy_body


@pytest.fixture(params=["builtin", "nginx", "caddy"])
def engine(request):
    return request.param


def audit_rows(p, **match):
    rows = p.api("GET", "/audit").json
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def test_create_update_get_list_delete(portico, upstream, engine):
    p = portico(engine=engine)
    up = upstream()
    body = proxy_body("orchestrator.fullpotential.ai", up.port, require_healthy=True, enable_ssl=False)

    r = p.put_proxy("orchestrator", body)
    assert r.status == 201, r
    assert r.json["droplet_name"] == "orchestrator"
    assert r.json["upstream"] == f"http://127.0.0.1:{up.port}"
    assert r.json["status"] == "active" and r.json["ssl_enabled"] is False
    assert r.json["apply"]["changed"] is True
    rev1 = r.json["revision"]

    # The same body again changes nothing: 200, no new revision.
    r = p.put_proxy("orchestrator", body)
    assert r.status == 200 and r.json["apply"]["changed"] is False
    assert r.json["revision"] == rev1

    body["upstream_port"] = up.port
    body["path_prefix"] = "/v1"
    r = p.put_proxy("orchestrator", body)
    assert r.status == 200, r
    assert r.json["revision"] == rev1 + 1
    assert r.json["path_prefix"] == "/v1"

    r = p.api("GET", "/proxies/orchestrator")
    assert r.status == 200 and r.json["domain"] == "orchestrator.fullpotential.ai"
    r = p.api("GET", "/proxies")
    assert r.status == 200 and [x["droplet_name"] for x in r.json] == ["orchestrator"]

    r = p.api("DELETE", "/proxies/orchestrator")
    assert r.status == 200 and r.json["deleted"] is True
    assert p.api("GET", "/proxies/orchestrator").status == 404
    assert p.api("DELETE", "/proxies/orchestrator").error_code == "PROXY_NOT_FOUND"
    assert p.api("GET", "/proxies").json == []


def test_missing_proxy_is_404_with_error_shape(portico, engine):
    p = portico(engine=engine)
    r = p.api("GET", "/proxies/nope", headers={"X-Request-ID": "req-404-check"})
    assert r.status == 404
    assert r.json["error"]["code"] == "PROXY_NOT_FOUND"
    assert r.json["error"]["message"]
    assert r.json["error"]["details"]["correlation_id"] == "req-404-check"
    assert r.headers["x-correlation-id"] == "req-404-check"
    # Without a client id one is generated, and still echoed.
    r = p.api("GET", "/proxies/nope")
    assert len(r.headers["x-correlation-id"]) == 32
    assert r.json["error"]["details"]["correlation_id"] == r.headers["x-correlation-id"]


def test_validation_names_each_field(portico, upstream, engine):
    p = portico(engine=engine)
    up = upstream()
    cases = [
        ({"domain": "a.com"}, "upstream_port"),
        ({"domain": "a.com; include /etc/passwd", "upstream_port": up.port}, "domain"),
        ({"domain": "10.0.0.1", "upstream_port": up.port}, "domain"),
        ({"domain": "a.com", "upstream_port": 70000}, "upstream_port"),
        ({"domain": "a.com", "upstream_port": up.port, "upstream_host": "x}y"}, "upstream_host"),
        ({"domain": "a.com", "upstreams": [{"host": "h", "port": 1}, {"host": "h", "port": 0}]}, "upstreams[1].port"),
        ({"domain": "a.com", "upstream_port": up.port, "path_prefix": "/a/../b"}, "path_prefix"),
        ({"domain": "a.com", "upstream_port": up.port, "health_check": {"path": "/h?x"}}, "health_check.path"),
        ({"domain": "a.com", "upstream_port": up.port, "surprise": True}, "surprise"),
    ]
    for body, field in cases:
        r = p.put_proxy("app", body)
        assert r.status == 400, (body, r)
        assert r.error_code == "INVALID_CONFIG"
        assert field in r.json["error"]["details"]["fields"], (body, r)
    r = p.put_proxy("Bad_Name", proxy_body("a.com", up.port))
    assert r.status == 400 and "name" in r.json["error"]["details"]["fields"]
    assert p.api("GET", "/proxies").json == []


def test_bad_json_big_bodies_and_media_type(portico, engine):
    p = portico(engine=engine)
    r = p.api("PUT", "/proxies/app", raw_body=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.error_code == "INVALID_JSON"
    r = p.api("PUT", "/proxies/app", raw_body=b"[1,2]", headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.error_code == "INVALID_JSON"
    dup = b'{"domain": "a.com", "domain": "b.com", "upstream_port": 1}'
    r = p.api("PUT", "/proxies/app", raw_body=dup, headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.error_code == "INVALID_JSON"
    big = json.dumps({"domain": "a.com", "upstream_port": 1, "pad": "x" * (70 * 1024)}).encode()
    r = p.api("PUT", "/proxies/app", raw_body=big, headers={"Content-Type": "application/json"})
    assert r.status == 413 and r.error_code == "PAYLOAD_TOO_LARGE"
    r = p.api("PUT", "/proxies/app", raw_body=b'{"domain": "a.com"}', headers={"Content-Type": "text/plain"})
    assert r.status == 415
    r = p.api("PATCH", "/proxies/app")
    assert r.status == 405 and "PUT" in r.headers["allow"]
    assert p.api("GET", "/nothing/here").status == 404


def test_route_conflict(portico, upstream, engine):
    p = portico(engine=engine)
    up = upstream()
    assert p.put_proxy("first", proxy_body("shop.example.com", up.port, path_prefix="/api")).status == 201
    r = p.put_proxy("second", proxy_body("SHOP.example.com", up.port, path_prefix="/api/"))
    assert r.status == 409 and r.error_code == "ROUTE_CONFLICT"
    assert r.json["error"]["details"]["owner"] == "first"
    assert p.put_proxy("second", proxy_body("shop.example.com", up.port, path_prefix="/web")).status == 201


def test_require_healthy_gates_the_change(portico, upstream, engine):
    p = portico(engine=engine)
    up = upstream()
    up.healthy = False
    r = p.put_proxy("gated", proxy_body("gated.example.com", up.port), headers={"X-Request-ID": "gate-1"})
    assert r.status == 503 and r.error_code == "UPSTREAM_UNHEALTHY"
    assert r.json["error"]["details"]["upstreams"][0]["status"] == 503
    assert p.api("GET", "/proxies/gated").status == 404
    assert p.api("GET", "/revisions").json == []
    rows = audit_rows(p, correlation_id="gate-1")
    assert rows and rows[-1]["result"] == "failure" and rows[-1]["error_code"] == "UPSTREAM_UNHEALTHY"
    # A dead port is unhealthy too; require_healthy false lets it through.
    r = p.put_proxy("gated", proxy_body("gated.example.com", 1))
    assert r.status == 503
    r = p.put_proxy("gated", proxy_body("gated.example.com", 1, require_healthy=False))
    assert r.status == 201
    up.healthy = True
    assert p.put_proxy("gated", proxy_body("gated.example.com", up.port)).status == 200


def test_audit_trail_records_every_attempt(portico, upstream, engine):
    p = portico(engine=engine)
    up = upstream()
    hdr = {"X-Request-ID": "audit-ok", "X-Portico-Actor": "ci-job-7"}
    assert p.put_proxy("aud", proxy_body("aud.example.com", up.port), headers=hdr).status == 201
    assert p.put_proxy("aud", {"domain": "x"}, headers={"X-Correlation-ID": "audit-bad"}).status == 400
    assert p.api("DELETE", "/proxies/ghost", headers={"X-Request-ID": "audit-404"}).status == 404
    ok = audit_rows(p, correlation_id="audit-ok")[0]
    assert ok["action"] == "proxy.put" and ok["result"] == "success"
    assert ok["actor"] == "local:ci-job-7" and ok["droplet_name"] == "aud" and ok["domain"] == "aud.example.com"
    assert ok["time"].endswith("Z")
    bad = audit_rows(p, correlation_id="audit-bad")[0]
    assert bad["result"] == "failure" and bad["error_code"] == "INVALID_CONFIG"
    assert audit_rows(p, correlation_id="audit-404")[0]["error_code"] == "PROXY_NOT_FOUND"
    # The log lines carry the same correlation id as the audit row.
    assert any(rec.get("correlation_id") == "audit-ok" and rec.get("msg") == "audit" for rec in p.log_records())
    # since= and limit= filter; without since the newest entries come, oldest first.
    everything = p.api("GET", "/audit").json
    assert [r["id"] for r in everything] == sorted(r["id"] for r in everything)
    assert p.api("GET", "/audit?limit=1").json == everything[-1:]
    assert p.api("GET", "/audit?limit=2").json == everything[-2:]
    assert p.api("GET", "/audit?since=0&limit=1").json == everything[:1]
    assert p.api("GET", "/audit?since=2999-01-01T00:00:00Z").json == []
    assert p.api("GET", "/audit?since=yesterday").status == 400


def test_revisions_and_restore(portico, upstream, engine):
    p = portico(engine=engine)
    up = upstream()
    assert p.put_proxy("a", proxy_body("a.example.com", up.port)).status == 201
    assert p.put_proxy("b", proxy_body("b.example.com", up.port)).status == 201
    assert p.api("DELETE", "/proxies/a").status == 200
    revs = p.api("GET", "/revisions").json
    assert [r["revision"] for r in revs] == [3, 2, 1]
    assert revs[0]["summary"] == "delete a" and revs[0]["proxies"] == 1

    r = p.api("POST", "/revisions/2/restore", body={}, headers={"X-Request-ID": "restore-2"})
    assert r.status == 200, r
    assert r.json["restored"] == 2 and r.json["revision"] == 4
    assert sorted(x["droplet_name"] for x in p.api("GET", "/proxies").json) == ["a", "b"]
    # Restoring what is already live changes nothing.
    r = p.api("POST", "/revisions/4/restore", body={})
    assert r.status == 200 and r.json["apply"]["changed"] is False
    assert p.api("POST", "/revisions/99/restore", body={}).error_code == "REVISION_NOT_FOUND"
    assert p.api("POST", "/revisions/x/restore", body={}).status == 400
    assert audit_rows(p, correlation_id="restore-2")[0]["action"] == "revision.restore"


def test_state_survives_restart(portico, upstream, engine):
    p = portico(engine=engine)
    up = upstream()
    assert p.put_proxy("keep", proxy_body("keep.example.com", up.port)).status == 201
    p.restart()
    r = p.api("GET", "/proxies/keep")
    assert r.status == 200 and r.json["revision"] == 1


def test_token_auth(portico, upstream, engine):
    token = "s3cret-token-0123456789"
    p = portico(engine=engine, settings={"api_token": token})
    up = upstream()
    # The health check stays open; everything else needs the token.
    assert http_request(p.api_port, "GET", "/proxy-manager/health").status in (200, 500)
    r = p.api("GET", "/proxies", token="", headers={"X-Request-ID": "noauth"})
    assert r.status == 401 and r.error_code == "UNAUTHORIZED"
    r = p.api("PUT", "/proxies/x", body=proxy_body("x.example.com", up.port), token="wrong-token",
              headers={"X-Request-ID": "badauth"})
    assert r.status == 401
    assert p.api("GET", "/proxies/x").status == 404
    assert p.api("GET", "/proxies").status == 200
    rows = p.api("GET", "/audit").json
    bad = [r for r in rows if r["correlation_id"] in ("noauth", "badauth")]
    assert len(bad) == 2 and all(r["error_code"] == "UNAUTHORIZED" and r["action"] == "auth" for r in bad)


def test_audit_keeps_attempts_with_bytes_that_are_not_utf8(portico):
    """A path segment that decodes to bytes that are not UTF-8 (%ff) is
    still audited and listed (as U+FFFD), and the log stays JSON lines:
    such entries were dropped from GET /audit without a word."""
    token = "s3cret-token-0123456789"
    p = portico(settings={"api_token": token})
    r = p.api("PUT", "/proxies/ab%ffcd", body={}, token="", headers={"X-Request-ID": "anon-ff"})
    assert r.status == 401
    r = p.api("PUT", "/proxies/ab%ffcd", body=proxy_body("a.example.com", 80, require_healthy=False),
              headers={"X-Request-ID": "bad-name-ff"})
    assert r.status == 400 and r.error_code == "INVALID_CONFIG"
    rows = {row["correlation_id"]: row for row in p.api("GET", "/audit").json}
    assert rows["anon-ff"]["action"] == "auth" and "\ufffd" in rows["anon-ff"]["detail"]
    assert rows["bad-name-ff"]["droplet_name"] == "ab\ufffdcd"
    assert rows["bad-name-ff"]["error_code"] == "INVALID_CONFIG"
    raw = p.log_path.read_bytes()
    for line in raw.splitlines():
        if line.startswith(b"{"):
            json.loads(line.decode("utf-8"))


def test_refuses_public_api_without_token(tmp_path):
    r = subprocess.run([BIN, "serve", "--api_listen=0.0.0.0:18999", f"--state_dir={tmp_path}/s", "--http_listen=127.0.0.1:1",
                        "--https_listen="], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "api_token" in r.stderr


def test_cross_origin_calls_are_refused(portico, engine):
    p = portico(engine=engine)
    r = p.api("GET", "/proxies", headers={"Origin": "http://evil.example"})
    assert r.status == 403 and r.error_code == "FORBIDDEN_ORIGIN"


def test_health_endpoint(portico, engine):
    p = portico(engine=engine)
    r = p.api("GET", "/proxy-manager/health")
    assert r.status == 200 and r.json["status"] == "healthy"
    assert r.json["engine"] == engine and r.json["checks"]["store"]["ok"] is True
    assert isinstance(r.json[engine], dict)
    assert r.json["ssl"]["certificates"] == 0


def test_cli(portico, upstream, engine):
    p = portico(engine=engine)
    up = upstream()
    env = {"PORTICO_URL": f"http://127.0.0.1:{p.api_port}", "PATH": "/usr/bin:/bin"}

    def cli(*args, stdin=None):
        return subprocess.run([BIN, *args], capture_output=True, text=True, env=env, input=stdin, timeout=60)

    r = cli("proxies", "put", "web", "--domain=web.example.com", f"--upstream=127.0.0.1:{up.port}")
    assert r.returncode == 0, r.stderr
    r = cli("proxies", "list")
    assert r.returncode == 0 and "web.example.com" in r.stdout and "NAME" in r.stdout
    r = cli("proxies", "list", "--json")
    assert json.loads(r.stdout)[0]["droplet_name"] == "web"
    r = cli("proxies", "put", "web2", "--file=-", stdin=json.dumps(proxy_body("web2.example.com", up.port)))
    assert r.returncode == 0, r.stderr
    r = cli("proxies", "get", "missing")
    assert r.returncode == 1 and "PROXY_NOT_FOUND" in r.stderr
    assert cli("health").returncode == 0
    r = cli("audit", "--limit=5", "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)) <= 5
    assert cli("proxies", "delete", "web").returncode == 0
    assert cli("bogus").returncode == 2
    env["PORTICO_URL"] = "http://127.0.0.1:1"
    assert cli("proxies", "list").returncode == 3


def test_config_command_redacts(tmp_path):
    r = subprocess.run([BIN, "config", "--api_token=very-secret-value-123", "--json"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0
    cfg = json.loads(r.stdout)
    assert cfg["api_token"]["value"] == "(redacted)" and cfg["api_token"]["source"] == "flag"
    assert "very-secret" not in r.stdout
    r = subprocess.run([BIN, "config", "--no_such_key=1"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "no_such_key" in r.stderr
