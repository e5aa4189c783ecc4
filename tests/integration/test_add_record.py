"""POST /add-record (seed 004): the DNS record and, with proxy_enabled and
port, the proxy -- both or neither.  End to end: dig resolves the name to
the proxy's address and curl through portico (builtin engine) with that
name reaches the upstream."""

import subprocess

import pytest

from conftest import free_port
from dnsutil import dig, free_dns_port

ZONE = "internal.test"


@pytest.fixture
def dns_portico(portico):
    port = free_dns_port()
    p = portico(settings={"dns_listen": f"127.0.0.1:{port}", "dns_zone": ZONE})
    p.dns_port = port
    return p


def add(p, **body):
    return p.api("POST", "/add-record", body=body)


def assert_nothing_left(p, service, name):
    assert dig(p.dns_port, name).status == "NXDOMAIN"
    assert p.api("GET", f"/dns/records/{name}").error_code == "DNS_RECORD_NOT_FOUND"
    assert p.api("GET", f"/proxies/{service}").error_code == "PROXY_NOT_FOUND"
    assert p.api("GET", "/revisions").json == []


def test_seed_example_end_to_end(dns_portico, upstream):
    p = dns_portico
    up = upstream("llm")
    name = f"llm.{ZONE}"
    r = add(p, service_name="llm-service", name=name, ip="127.0.0.1", port=up.port, forward_to_ip="127.0.0.1",
            proxy_enabled=True)
    assert r.status == 201, r
    assert r.json["record"]["name"] == name
    assert (r.json["record"]["type"], r.json["record"]["value"]) == ("A", "127.0.0.1")
    proxy = r.json["proxy"]
    assert proxy["droplet_name"] == "llm-service"
    assert proxy["domain"] == name
    assert proxy["upstream"] == f"http://127.0.0.1:{up.port}"
    assert proxy["apply"]["verify"]["ok"] is True

    # The name resolves to the proxy's address...
    answers = dig(p.dns_port, name).answers
    assert answers == [(f"{name}.", "A", "127.0.0.1")]
    address = answers[0][2]
    # ...and curl, sent there with that name, reaches the upstream.
    out = subprocess.run(["curl", "-s", "--max-time", "10", "--resolve", f"{name}:{p.http_port}:{address}",
                          f"http://{name}:{p.http_port}/v1/models"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert '"upstream": "llm"' in out.stdout
    assert [path for path in up.paths() if path != "/health"][-1] == "/v1/models"  # health checks aside

    # One revision for both halves, one audit entry of the call.
    revisions = p.api("GET", "/revisions").json
    assert len(revisions) == 1 and revisions[0]["action"] == "add-record"
    entries = [e for e in p.api("GET", "/audit").json if e["action"] == "add-record"]
    assert [(e["result"], e["droplet_name"], e["domain"]) for e in entries] == [("success", "llm-service", name)]

    # Again, unchanged: 200, nothing new.
    again = add(p, service_name="llm-service", name=name, ip="127.0.0.1", port=up.port,
                forward_to_ip="127.0.0.1", proxy_enabled=True)
    assert again.status == 200
    assert again.json["record"]["changed"] is False
    assert again.json["proxy"]["apply"]["changed"] is False
    assert len(p.api("GET", "/revisions").json) == 1


def test_record_only(dns_portico):
    p = dns_portico
    r = add(p, service_name="printer", name="printer", ip="2001:db8::7")
    assert r.status == 201, r
    assert r.json["proxy"] is None and r.json["proxy_enabled"] is False
    assert dig(p.dns_port, f"printer.{ZONE}", "AAAA").answers == [(f"printer.{ZONE}.", "AAAA", "2001:db8::7")]
    assert p.api("GET", "/proxies").json == []
    # A port without proxy_enabled makes no proxy either.
    r = add(p, name="nas", ip="192.0.2.4", port=5000)
    assert r.status == 201 and r.json["proxy"] is None


def test_unhealthy_upstream_leaves_no_record(dns_portico):
    p = dns_portico
    dead = free_port()  # nothing listens there
    name = f"dead.{ZONE}"
    r = add(p, service_name="dead-svc", name=name, ip="127.0.0.1", port=dead, forward_to_ip="127.0.0.1",
            proxy_enabled=True)
    assert (r.status, r.error_code) == (503, "UPSTREAM_UNHEALTHY"), r
    assert_nothing_left(p, "dead-svc", name)
    failed = [e for e in p.api("GET", "/audit").json if e["action"] == "add-record"]
    assert [(e["result"], e["error_code"]) for e in failed] == [("failure", "UPSTREAM_UNHEALTHY")]


def test_engine_failure_leaves_no_record(dns_portico):
    # The builtin engine resolves upstream names when it builds the
    # routing snapshot: a name that does not resolve fails the apply.
    p = dns_portico
    name = f"ghost.{ZONE}"
    r = add(p, service_name="ghost", name=name, ip="127.0.0.1", port=8080, forward_to_ip="no-such-host.invalid",
            proxy_enabled=True, require_healthy=False)
    assert r.status == 500, r
    assert r.error_code == "ENGINE_APPLY_FAILED"
    assert_nothing_left(p, "ghost", name)


def test_route_conflict_leaves_no_record(dns_portico, upstream):
    p = dns_portico
    up = upstream()
    name = f"taken.{ZONE}"
    assert p.put_proxy("first", {"domain": name, "upstream_host": "127.0.0.1", "upstream_port": up.port}).status == 201
    r = add(p, service_name="second", name=name, ip="127.0.0.1", port=up.port, proxy_enabled=True)
    assert (r.status, r.error_code) == (409, "ROUTE_CONFLICT"), r
    assert dig(p.dns_port, name).status == "NXDOMAIN"
    assert p.api("GET", "/proxies/second").status == 404


def test_validation(dns_portico):
    p = dns_portico
    cases = [
        ({"name": "x", "ip": "192.0.2.1", "proxy_enabled": True, "service_name": "x"}, "port"),
        ({"name": "x", "ip": "192.0.2.1", "proxy_enabled": True, "port": 80}, "service_name"),
        ({"name": "x", "ip": "not-ip"}, "ip"),
        ({"name": "www.elsewhere.org.", "ip": "192.0.2.1"}, "name"),
        ({"ip": "192.0.2.1"}, "name"),
        ({"name": "x", "ip": "192.0.2.1", "port": 0, "proxy_enabled": True, "service_name": "x"}, "port"),
        ({"name": "x", "ip": "192.0.2.1", "service_name": "Bad Name"}, "service_name"),
        ({"name": "x", "ip": "192.0.2.1", "proxy_enabled": "yes"}, "proxy_enabled"),
        ({"name": "x", "ip": "192.0.2.1", "proxy_enabled": True, "service_name": "x", "port": 80,
          "forward_to_ip": "bad host!"}, "forward_to_ip"),
        ({"name": "x", "ip": "192.0.2.1", "unknown": 1}, "unknown"),
    ]
    for body, field in cases:
        r = p.api("POST", "/add-record", body=body)
        assert (r.status, r.error_code) == (400, "INVALID_CONFIG"), (body, r)
        assert field in r.json["error"]["details"]["fields"], (body, r)
    assert p.api("GET", "/dns/records").json == []
    assert p.api("GET", "/proxies").json == []
