"""The PostgreSQL store (store = postgres://...) end to end.  The test runs
its own PostgreSQL (Debian's server binaries; initdb into a temporary
folder, as the postgres user when the test runs as root), with a user that
logs in with a password, one database per test, and real portico nodes on
it: changes, revisions, the audit trail, certificates and DNS records read
back after a restart; two nodes starting and allocating ports at once; the
store in the health check; the server going away and coming back; a server
that is not there; a password that never reaches the log.  The C store
cases (tests/unit/test_store.c) run against the same server too."""

import os
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import BIN, free_port, proxy_body, wait_until
from dnsutil import free_dns_port
from dp_util import make_cert
from pgutil import PASSWORD, USER, pg  # noqa: F401 (fixture)


@pytest.fixture
def db(pg):
    return pg.new_database()


def assert_password_not_logged(*nodes):
    for p in nodes:
        assert PASSWORD not in p.read_log()


def audit(p, **match):
    return [r for r in p.api("GET", "/audit").json if all(r.get(k) == v for k, v in match.items())]


def test_state_survives_a_restart(pg, db, portico, upstream, tmp_path):
    name, url = db
    dns_port = free_dns_port()
    p = portico(settings={"store": url, "dns_listen": f"127.0.0.1:{dns_port}", "dns_zone": "internal.test"})
    up = upstream()
    health = p.api("GET", "/proxy-manager/health").json
    assert health["checks"]["store"] == {"ok": True, "schema_version": 4}

    assert p.put_proxy("a", proxy_body("a.example.com", up.port)).status == 201
    assert p.put_proxy("b", proxy_body("b.example.com", up.port), headers={"X-Request-ID": "put-b"}).status == 201
    assert p.api("GET", "/proxies/a").json["domain"] == "a.example.com"
    assert p.api("DELETE", "/proxies/a").status == 200
    assert p.api("GET", "/proxies/a").status == 404
    assert [r["revision"] for r in p.api("GET", "/revisions").json] == [3, 2, 1]
    r = p.api("POST", "/revisions/2/restore", body={}, headers={"X-Request-ID": "restore-2"})
    assert r.status == 200 and r.json["revision"] == 4, r
    cert, key, _ = make_cert(tmp_path, "b.example.com")
    assert p.api("PUT", "/certificates/b.example.com", body={"certificate": cert, "key": key}).status == 201
    r = p.api("PUT", "/dns/records/svc", body={"type": "A", "value": "192.0.2.7"})
    assert r.status in (200, 201), r
    assert p.api("PUT", "/proxies/bad", body={"domain": "x"}, headers={"X-Request-ID": "bad"}).status == 400
    rows_before = p.api("GET", "/audit").json

    # Four commits, a certificate and a DNS record: each bumped the
    # generation once; the refused change wrote nothing but its audit row.
    assert pg.psql("SELECT value FROM generation", db=name) == "6"
    assert pg.psql("SELECT version FROM schema_version", db=name) == "4"

    p.restart()
    assert sorted(x["droplet_name"] for x in p.api("GET", "/proxies").json) == ["a", "b"]
    revs = p.api("GET", "/revisions").json
    assert [r["revision"] for r in revs] == [4, 3, 2, 1]
    assert revs[0]["action"] == "revision.restore" and revs[1]["summary"] == "delete a"
    assert p.api("GET", "/certificates/b.example.com").json["domain"] == "b.example.com"
    assert p.api("GET", "/dns/records/svc").json["records"][0]["value"] == "192.0.2.7"
    rows = p.api("GET", "/audit").json
    assert rows[:len(rows_before)] == rows_before
    assert audit(p, correlation_id="put-b")[0]["result"] == "success"
    assert audit(p, correlation_id="restore-2")[0]["action"] == "revision.restore"
    assert audit(p, correlation_id="bad")[0]["error_code"] == "INVALID_CONFIG"
    # The routes are served from the state read back.
    assert p.get("a.example.com").status == 200
    assert not (p.state_dir / "portico.db").exists()
    assert_password_not_logged(p)


def _free_block(n, start=23000):
    """n consecutive ports nothing on this host holds (the allocator skips
    bound ones)."""
    lo = start
    while lo + n < 32000:
        if all(_bindable(port) for port in range(lo, lo + n)):
            return lo
        lo += n
    raise AssertionError("no free block of ports")


def _bindable(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("0.0.0.0", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_two_nodes_start_and_allocate_ports_at_once(pg, db, portico):
    """Both nodes migrate the empty database at the same moment (one
    does it, the other finds it done), then hand out ports concurrently:
    the store's unique index keeps every port to one owner."""
    _, url = db
    lo = _free_block(40)
    settings = {"store": url, "port_range": f"{lo}-{lo + 39}"}
    nodes = [portico(settings=settings, start=False, name=f"node{i}") for i in range(2)]
    for p in nodes:
        p.start(wait=False)
    for p in nodes:
        p.wait_ready()
        assert p.api("GET", "/proxy-manager/health").json["checks"]["store"]["schema_version"] == 4

    def one(i):
        return nodes[i % 2].api("POST", "/ports", body={"owner": f"svc-{i}", "internal_port": 8080})

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(one, range(30)))
    assert all(r.status == 201 for r in answers), [r for r in answers if r.status != 201][:3]
    ports = [r.json["port"] for r in answers]
    assert len(set(ports)) == 30 and all(lo <= port < lo + 40 for port in ports)
    for p in nodes:
        listed = p.api("GET", "/ports").json["allocations"]
        assert sorted(a["port"] for a in listed) == sorted(ports)
    assert_password_not_logged(*nodes)


def test_server_outage_and_reconnect(pg, db, portico, upstream):
    name, url = db
    p = portico(settings={"store": url})
    up = upstream()
    assert p.put_proxy("a", proxy_body("a.example.com", up.port)).status == 201
    # Sessions ended while portico sat idle (a terminated backend, a
    # restart): the next call notices before it sends anything and
    # reconnects; the change succeeds at once.
    pg.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    assert p.put_proxy("a", proxy_body("a2.example.com", up.port)).status == 200
    pg.stop()
    pg.start()
    assert p.put_proxy("a", proxy_body("a.example.com", up.port)).status == 200
    assert p.read_log().count("store reconnected") == 2

    pg.stop()
    try:
        started = time.monotonic()
        r = p.put_proxy("b", proxy_body("b.example.com", up.port))
        assert r.status == 500 and r.error_code == "STORE_FAILED", r
        assert time.monotonic() - started < 20
        health = p.api("GET", "/proxy-manager/health")
        assert health.status == 500 and health.json["checks"]["store"]["ok"] is False
        assert p.proc.poll() is None
    finally:
        pg.start()
    # The first change after the server is back reconnects and succeeds.
    assert p.put_proxy("b", proxy_body("b.example.com", up.port)).status == 201
    assert p.api("GET", "/proxy-manager/health").json["checks"]["store"]["ok"] is True
    assert p.get("b.example.com").status == 200
    p.restart()
    assert sorted(x["droplet_name"] for x in p.api("GET", "/proxies").json) == ["a", "b"]
    assert_password_not_logged(p)


def test_unreachable_server_stops_start_up(portico):
    port = free_port()
    p = portico(settings={"store": f"postgres://{USER}:{PASSWORD}@127.0.0.1:{port}/portico"}, start=False)
    p.start(wait=False)
    assert p.proc.wait(timeout=60) != 0
    log = p.read_log()
    assert f"store postgres://{USER}:***@127.0.0.1:{port}/portico: connection to server at" in log
    assert "Connection refused" in log
    assert_password_not_logged(p)


def test_config_masks_the_password():
    r = subprocess.run([BIN, "config", "--json", f"--store=postgres://{USER}:{PASSWORD}@db.internal:5432/portico"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert PASSWORD not in r.stdout
    assert f"postgres://{USER}:***@db.internal:5432/portico" in r.stdout


def test_store_unit_cases_against_postgres(pg, db):
    """tests/unit/test_store.c's cases, on this server (they empty the
    database they are given)."""
    _, url = db
    unit = os.path.join(os.path.dirname(BIN), "tests", "test_store")
    assert os.path.exists(unit), f"{unit} not built"
    r = subprocess.run([unit], capture_output=True, text=True, timeout=120, env=dict(os.environ, PTC_TEST_POSTGRES=url))
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    assert "-- postgresql" in r.stdout and "FAIL" not in r.stdout
