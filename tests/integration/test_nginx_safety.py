"""No change, good or bad, breaks a route that was working (seed 000 made
real with the nginx engine): a change nginx rejects and a failing reload
are rolled back byte for byte; every change is backed up and old backups
are pruned; portico killed between the write and the reload comes back
to the store's state; files edited or deleted by hand are repaired at
start."""

import http.client
import os
import signal
import stat
import time

import pytest

from conftest import proxy_body


def nginx_dir(p):
    return p.state_dir / "nginx"


def snapshot(p):
    """Every managed entry: file bytes and modes, link targets."""
    out = {}
    for sub in ("sites-available", "sites-enabled"):
        d = nginx_dir(p) / sub
        for entry in sorted(d.iterdir()):
            st = os.lstat(entry)
            if stat.S_ISLNK(st.st_mode):
                out[str(entry)] = ("link", os.readlink(entry))
            else:
                out[str(entry)] = ("file", st.st_mode, entry.read_bytes())
    return out


def site(p, domain):
    return nginx_dir(p) / "sites-available" / f"portico-{domain}.conf"


def audit_row(p, correlation_id):
    """The one audit row of the call the test made with this id."""
    rows = [r for r in p.api("GET", "/audit").json if r["correlation_id"] == correlation_id]
    assert len(rows) == 1, rows
    return rows[0]


def reload_script(tmp_path):
    """A reload command that fails, or kills its parent portico, while a
    flag file exists, and else reloads nginx."""
    script = tmp_path / "reload.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"if [ -e '{tmp_path}/kill-portico' ]; then kill -9 \"$PPID\"; exit 1; fi\n"
        f"if [ -e '{tmp_path}/fail-reload' ]; then echo 'reload refused by the test' >&2; exit 1; fi\n"
        'exec "$@"\n')
    script.chmod(0o755)
    return f"{script} {{nginx_bin}} -s reload"


@pytest.fixture
def managed_nginx_reaper():
    """Stops, by the PID in its pid file, a managed nginx a killed portico
    left behind (only when a test failed before its portico took it back)."""
    instances = []
    yield instances.append
    for p in instances:
        pid_file = nginx_dir(p) / "nginx.pid"
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except (OSError, ValueError):
            continue
        if str(nginx_dir(p) / "nginx.conf").encode() in cmdline:
            os.kill(pid, signal.SIGTERM)


def test_change_nginx_rejects_is_rolled_back(portico, upstream):
    p = portico(engine="nginx")
    a, b = upstream("a"), upstream("b")
    assert p.put_proxy("web", proxy_body("web.example.test", a.port)).status == 201
    assert p.put_proxy("other", proxy_body("other.example.test", b.port)).status == 201
    before = snapshot(p)

    # An upstream nginx cannot resolve makes `nginx -t` fail.
    r = p.put_proxy("broken", proxy_body("web.example.test", 80, host="nonexistent.invalid",
                                         path_prefix="/broken", require_healthy=False),
                    headers={"X-Request-ID": "nginx-rejects"})
    assert r.status == 500, r
    assert r.error_code == "NGINX_TEST_FAILED"
    out = r.json["error"]["details"]["nginx_output"]
    assert "host not found in upstream" in out and "nonexistent.invalid" in out
    assert snapshot(p) == before
    assert p.api("GET", "/proxies/broken").status == 404
    assert p.get("web.example.test").json["upstream"] == "a"
    assert p.get("other.example.test").json["upstream"] == "b"
    row = audit_row(p, "nginx-rejects")
    assert (row["action"], row["result"], row["error_code"]) == ("proxy.put", "failure", "NGINX_TEST_FAILED")
    assert row["droplet_name"] == "broken" and row["domain"] == "web.example.test"

    r = p.api("GET", "/proxy-manager/health")
    assert r.json["status"] == "degraded" and r.json["nginx"]["config_test_ok"] is False
    # The next good change clears it.
    assert p.put_proxy("web", proxy_body("web.example.test", b.port)).status == 200
    r = p.api("GET", "/proxy-manager/health")
    assert r.json["status"] == "healthy", r


def test_failing_reload_is_rolled_back(portico, upstream, tmp_path):
    p = portico(engine="nginx", settings={"nginx_reload_cmd": reload_script(tmp_path)})
    a, b = upstream("a"), upstream("b")
    assert p.put_proxy("web", proxy_body("web.example.test", a.port)).status == 201
    assert p.get("web.example.test").json["upstream"] == "a"
    before = snapshot(p)

    (tmp_path / "fail-reload").touch()
    r = p.put_proxy("web", proxy_body("web.example.test", b.port), headers={"X-Request-ID": "reload-fails"})
    assert r.status == 500, r
    assert r.error_code == "NGINX_RELOAD_FAILED"
    details = r.json["error"]["details"]
    assert "reload refused by the test" in details["nginx_output"]
    assert details["rollback_reload"] != "ok"
    assert snapshot(p) == before
    assert p.get("web.example.test").json["upstream"] == "a"
    assert p.api("GET", "/proxies/web").json["upstream_port"] == a.port
    row = audit_row(p, "reload-fails")
    assert (row["result"], row["error_code"]) == ("failure", "NGINX_RELOAD_FAILED")

    (tmp_path / "fail-reload").unlink()
    assert p.put_proxy("web", proxy_body("web.example.test", b.port)).status == 200
    assert p.get("web.example.test").json["upstream"] == "b"


def test_backups_on_every_change_and_pruned_by_age(portico, upstream):
    p = portico(engine="nginx", settings={"backup_retention_days": "7"})
    a, b = upstream("a"), upstream("b")
    backups = nginx_dir(p) / "backups"
    r = p.put_proxy("web", proxy_body("web.example.test", a.port))
    assert r.status == 201 and r.json["apply"]["backups"] == []  # a new file replaces nothing

    made = []
    for i, port in enumerate((b.port, a.port, b.port)):
        r = p.put_proxy("web", proxy_body("web.example.test", port), headers={"X-Request-ID": f"backup-{i}"})
        assert r.status == 200, r
        assert len(r.json["apply"]["backups"]) == 1
        made += r.json["apply"]["backups"]
        assert audit_row(p, f"backup-{i}")["result"] == "success"
    assert sorted(str(f) for f in backups.iterdir()) == sorted(made)
    # Each backup holds the file as it was before its change.
    assert f":{a.port} " in open(made[0]).read()
    assert f":{b.port} " in open(made[1]).read()
    # Names sort by time.
    assert sorted(made) == made

    month_ago = time.time() - 30 * 86400
    for f in made[:2]:
        os.utime(f, (month_ago, month_ago))
    r = p.put_proxy("web", proxy_body("web.example.test", a.port))
    assert r.status == 200, r
    left = sorted(str(f) for f in backups.iterdir())
    assert left == sorted([made[2]] + r.json["apply"]["backups"])


def test_kill_9_between_write_and_reload(portico, upstream, tmp_path, managed_nginx_reaper):
    p = portico(engine="nginx", settings={"nginx_reload_cmd": reload_script(tmp_path)})
    managed_nginx_reaper(p)
    a, b = upstream("a"), upstream("b")
    assert p.put_proxy("web", proxy_body("web.example.test", a.port)).status == 201
    stored = site(p, "web.example.test").read_bytes()
    master = p.api("GET", "/proxy-manager/health").json["nginx"]["master_pid"]

    # The reload command kills portico: the new file is written, nginx was
    # neither reloaded nor the store committed.
    (tmp_path / "kill-portico").touch()
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        p.put_proxy("web", proxy_body("web.example.test", b.port), headers={"X-Request-ID": "killed-mid-apply"})
    assert p.proc.wait(timeout=30) == -signal.SIGKILL
    p.proc = None
    p.log.close()
    (tmp_path / "kill-portico").unlink()
    assert site(p, "web.example.test").read_bytes() != stored
    assert p.get("web.example.test").json["upstream"] == "a"

    p.start()
    assert site(p, "web.example.test").read_bytes() == stored
    assert p.get("web.example.test").json["upstream"] == "a"
    assert p.api("GET", "/proxies/web").json["upstream_port"] == a.port
    health = p.api("GET", "/proxy-manager/health").json
    assert health["nginx"]["master_pid"] == master  # the running nginx was taken back
    assert health["status"] == "healthy", health
    # The attempt the kill cut short is in the audit trail, as such.
    row = audit_row(p, "killed-mid-apply")
    assert (row["action"], row["result"], row["error_code"]) == ("proxy.put", "interrupted", "INTERRUPTED")
    repairs = [r for r in p.log_records() if r.get("msg") == "repaired nginx file"]
    assert any(r["reason"] == "edited" and r["file"].endswith("portico-web.example.test.conf") for r in repairs)

    assert p.put_proxy("web", proxy_body("web.example.test", b.port)).status == 200
    assert p.get("web.example.test").json["upstream"] == "b"


def test_hand_edits_are_repaired_at_start(portico, upstream):
    p = portico(engine="nginx")
    a, b = upstream("a"), upstream("b")
    assert p.put_proxy("web", proxy_body("web.example.test", a.port)).status == 201
    assert p.put_proxy("api", proxy_body("api.example.test", b.port)).status == 201
    before = snapshot(p)
    p.stop()

    web, api = site(p, "web.example.test"), site(p, "api.example.test")
    web.write_text(web.read_text().replace(f":{a.port} ", f":{b.port} ") + "# edited by hand\n")
    api.unlink()
    (nginx_dir(p) / "sites-enabled" / "portico-api.example.test.conf").unlink()
    stale = nginx_dir(p) / "sites-available" / "portico-gone.example.test.conf"
    stale.write_text("# a domain the store does not know\n")
    foreign = nginx_dir(p) / "sites-available" / "not-portico.conf"
    foreign.write_text("# someone else's file\n")

    p.start()
    after = snapshot(p)
    assert {k: v for k, v in after.items() if "not-portico" not in k} == before
    assert foreign.read_text() == "# someone else's file\n"
    reasons = {(os.path.basename(r["file"]), r["reason"]) for r in p.log_records()
               if r.get("msg") == "repaired nginx file"}
    assert ("portico-web.example.test.conf", "edited") in reasons
    assert ("portico-api.example.test.conf", "deleted") in reasons
    assert ("portico-gone.example.test.conf", "stale") in reasons
    # The drifted file was backed up before the repair.
    saved = [f.read_text() for f in (nginx_dir(p) / "backups").iterdir()]
    assert any("# edited by hand" in s for s in saved)
    assert p.get("web.example.test").json["upstream"] == "a"
    assert p.get("api.example.test").json["upstream"] == "b"


def test_unhealthy_upstream_changes_nothing(portico, upstream):
    p = portico(engine="nginx")
    a, dead = upstream("a"), upstream("dead")
    assert p.put_proxy("web", proxy_body("web.example.test", a.port)).status == 201
    before = snapshot(p)
    backups = sorted(os.listdir(nginx_dir(p) / "backups"))
    revisions = p.api("GET", "/revisions").json
    dead.healthy = False
    r = p.put_proxy("web", proxy_body("web.example.test", dead.port), headers={"X-Request-ID": "gated"})
    assert r.status == 503 and r.error_code == "UPSTREAM_UNHEALTHY"
    r = p.put_proxy("new", proxy_body("new.example.test", dead.port), headers={"X-Request-ID": "gated-new"})
    assert r.status == 503
    assert snapshot(p) == before
    assert sorted(os.listdir(nginx_dir(p) / "backups")) == backups
    assert p.api("GET", "/revisions").json == revisions
    assert p.api("GET", "/proxies/web").json["upstream_port"] == a.port
    assert p.get("web.example.test").json["upstream"] == "a"
    for cid in ("gated", "gated-new"):
        row = audit_row(p, cid)
        assert (row["result"], row["error_code"]) == ("failure", "UPSTREAM_UNHEALTHY")
