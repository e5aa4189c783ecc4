"""The port allocator through the API and the CLI (seed 003, DESIGN §2.2,
§9): lowest free port, reserved and bound ports skipped, 50 concurrent
allocations, exhaustion, release and reuse, statistics that match the
rows, validation and the audit trail."""

import json
import os
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

from conftest import BIN, http_request


def bindable(port):
    """True when nothing holds port on this host (TCP, any address)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("0.0.0.0", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_block(n, start=22000):
    """n consecutive free ports below the ephemeral range, so that client
    sockets of other tests do not wander into it."""
    lo = start
    while lo + n < 32000:
        if all(bindable(p) for p in range(lo, lo + n)):
            return lo
        lo += n
    raise AssertionError("no free block of ports")


def allocate(p, owner, internal_port, headers=None, **extra):
    return p.api("POST", "/ports", body={"owner": owner, "internal_port": internal_port, **extra}, headers=headers)


def test_fifty_concurrent_allocations_get_fifty_ports(portico):
    lo = free_block(60)
    p = portico(settings={"port_range": f"{lo}-{lo + 59}", "reserved_ports": f"{lo + 3}"})

    def one(i):
        return allocate(p, f"module-{i}", 8080)

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(one, range(50)))
    assert all(r.status == 201 for r in answers), [r for r in answers if r.status != 201][:3]
    ports = [r.json["port"] for r in answers]
    assert len(set(ports)) == 50
    assert all(lo <= port <= lo + 59 and port != lo + 3 for port in ports)
    # The lowest ports went first: 50 of the 51 below lo+51 but the reserved one.
    assert sorted(ports) == [port for port in range(lo, lo + 51) if port != lo + 3]

    stats = p.api("GET", "/ports").json
    assert stats["total_allocated"] == 50
    assert stats["total_available"] == 60 - 1 - 50
    assert stats["port_range"] == f"{lo}-{lo + 59}"
    assert sorted(a["port"] for a in stats["allocations"]) == sorted(ports)
    assert {a["owner"] for a in stats["allocations"]} == {f"module-{i}" for i in range(50)}


def test_bound_and_reserved_ports_are_skipped(portico):
    lo = free_block(6)
    p = portico(settings={"port_range": f"{lo}-{lo + 5}", "reserved_ports": f"{lo},{lo + 2}-{lo + 3}"})
    # Another process listens on lo+1 (this test's process, not portico).
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", lo + 1))
    holder.listen(1)
    try:
        r = allocate(p, "orders", 8080)
        assert r.status == 201, r
        assert r.json["port"] == lo + 4
        assert r.json["allocated_ports"] == {"8080": lo + 4}
    finally:
        holder.close()
    # Once the other process lets go, the port is handed out again.
    r = allocate(p, "billing", 8080)
    assert r.json["port"] == lo + 1


def test_seed_example_requested_external_port_is_ignored(portico):
    lo = free_block(4)
    p = portico(settings={"port_range": f"{lo}-{lo + 3}"})
    first = allocate(p, "example-app", 8080, external_port=lo + 1)
    second = allocate(p, "example-app-2", 8080, external_port=lo + 3)
    assert (first.status, first.json["port"]) == (201, lo)
    assert (second.status, second.json["port"]) == (201, lo + 1)
    assert second.json["requested_external_port"] == {"port": lo + 3, "honoured": False}
    # The same owner and internal port again: the port it holds, 200.
    again = allocate(p, "example-app", 8080)
    assert (again.status, again.json["port"], again.json["created"]) == (200, lo, False)
    got = p.api("GET", "/ports/example-app")
    assert got.status == 200
    assert got.json["owner"] == "example-app"
    assert got.json["allocated_ports"] == {"8080": lo}


def test_exhaustion_is_409(portico):
    lo = free_block(3)
    p = portico(settings={"port_range": f"{lo}-{lo + 2}", "reserved_ports": f"{lo + 1}"})
    assert allocate(p, "a", 1).status == 201
    assert allocate(p, "b", 1).status == 201
    r = allocate(p, "c", 1)
    assert r.status == 409
    assert r.error_code == "PORT_RANGE_EXHAUSTED"
    assert p.api("GET", "/ports").json["total_available"] == 0


def test_release_reuse_and_stats_match_rows(portico):
    lo = free_block(10)
    p = portico(settings={"port_range": f"{lo}-{lo + 9}", "reserved_ports": f"{lo + 9}"})
    assert allocate(p, "web", 8080).json["port"] == lo
    assert allocate(p, "web", 8443).json["port"] == lo + 1
    assert allocate(p, "db", 5432).json["port"] == lo + 2

    r = p.api("DELETE", "/ports/web")
    assert r.status == 200, r
    assert r.json["released_ports"] == {"8080": lo, "8443": lo + 1}
    assert r.json["count"] == 2
    assert p.api("GET", "/ports/web").error_code == "PORT_OWNER_NOT_FOUND"
    again = p.api("DELETE", "/ports/web")
    assert (again.status, again.error_code) == (404, "PORT_OWNER_NOT_FOUND")
    assert p.api("DELETE", "/ports/never-seen").status == 404

    # Released ports are handed out again, lowest first.
    assert allocate(p, "cache", 6379).json["port"] == lo

    active = p.api("GET", "/ports").json
    everything = p.api("GET", "/ports?status=all").json
    rows = everything["allocations"]
    assert len(rows) == 4
    released = [a for a in rows if a["status"] == "released"]
    assert sorted(a["port"] for a in released) == [lo, lo + 1]
    assert all(a["owner"] == "web" and a["released_at"] for a in released)
    live = [a for a in rows if a["status"] == "active"]
    assert sorted((a["owner"], a["port"]) for a in live) == sorted(
        (a["owner"], a["port"]) for a in active["allocations"])
    for stats in (active, everything):
        assert stats["total_allocated"] == len(live) == 2
        assert stats["total_available"] == 10 - 1 - len(live)
    assert p.api("GET", "/ports?status=bogus").status == 400

    # The allocations survive a restart (the store is the truth).
    p.restart()
    assert p.api("GET", "/ports/cache").json["allocated_ports"] == {"6379": lo}


def test_validation_and_audit(portico):
    lo = free_block(4)
    p = portico(settings={"port_range": f"{lo}-{lo + 3}"})
    bad = [
        {"owner": "Bad Name", "internal_port": 80},
        {"owner": "ok", "internal_port": 0},
        {"owner": "ok", "internal_port": "80"},
        {"owner": "ok"},
        {"internal_port": 80},
        {"owner": "ok", "internal_port": 80, "colour": "blue"},
    ]
    for body in bad:
        r = p.api("POST", "/ports", body=body)
        assert (r.status, r.error_code) == (400, "INVALID_CONFIG"), (body, r)
        assert r.json["error"]["details"]["fields"]
    assert p.api("GET", "/ports/UPPER").status == 400
    assert p.api("POST", "/ports", raw_body=b"{", headers={"Content-Type": "application/json"}).error_code \
        == "INVALID_JSON"

    r = allocate(p, "audited", 9000, headers={"X-Request-ID": "alloc-1"})
    assert r.status == 201
    p.api("DELETE", "/ports/audited", headers={"X-Request-ID": "release-1"})
    entries = p.api("GET", "/audit").json
    by_id = {e["correlation_id"]: e for e in entries}
    assert by_id["alloc-1"]["action"] == "port.allocate"
    assert by_id["alloc-1"]["result"] == "success"
    assert by_id["alloc-1"]["droplet_name"] == "audited"
    assert by_id["release-1"]["action"] == "port.release"
    failures = [e for e in entries if e["action"] == "port.allocate" and e["result"] == "failure"]
    assert len(failures) == len(bad) + 1


def cli(p, *args):
    env = dict(os.environ, PORTICO_URL=f"http://127.0.0.1:{p.api_port}")
    return subprocess.run([BIN, *args], env=env, capture_output=True, text=True, timeout=60)


def test_cli(portico):
    lo = free_block(4)
    p = portico(settings={"port_range": f"{lo}-{lo + 3}"})
    r = cli(p, "ports", "allocate", "shop", "8080")
    assert r.returncode == 0, r.stderr
    assert f"8080 -> {lo}" in r.stdout
    r = cli(p, "ports", "list", "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout)["allocations"][0]["port"] == lo
    r = cli(p, "ports", "list")
    assert "shop" in r.stdout and str(lo) in r.stdout
    assert cli(p, "ports", "get", "shop").returncode == 0
    assert cli(p, "ports", "release", "shop").returncode == 0
    r = cli(p, "ports", "get", "shop")
    assert r.returncode == 1
    assert "PORT_OWNER_NOT_FOUND" in r.stderr
    assert cli(p, "ports", "allocate", "shop", "notaport").returncode == 2
    assert http_request(p.api_port, "GET", "/ports").status == 200
