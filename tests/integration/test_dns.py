"""The authoritative DNS responder (seed 004, DESIGN §6) asked with `dig`
over UDP and TCP, records through /dns/records, proxies with dns: true,
the zone file, hostile packets from raw sockets, and the CLI."""

import json
import os
import socket
import struct
import subprocess

import pytest

from conftest import BIN, proxy_body
from dnsutil import dig, free_dns_port, qid, query, rcode, udp_exchange

ZONE = "internal.test"


@pytest.fixture
def dns_portico(portico):
    port = free_dns_port()
    p = portico(settings={"dns_listen": f"127.0.0.1:{port}", "dns_zone": ZONE, "dns_proxy_ip": "127.0.0.1"})
    p.dns_port = port
    return p


def put_record(p, name, rtype, value, **extra):
    return p.api("PUT", f"/dns/records/{name}", body={"type": rtype, "value": value, **extra})


def test_answers_over_udp_and_tcp(dns_portico):
    p = dns_portico
    assert put_record(p, "llm", "A", "100.1.1.1").status == 201
    assert put_record(p, f"llm.{ZONE}", "AAAA", "2001:db8::1", ttl=60).status == 201
    assert put_record(p, f"deep.sub.{ZONE}.", "A", "100.1.1.2").status == 201

    for tcp in (False, True):
        r = dig(p.dns_port, f"llm.{ZONE}", "A", tcp=tcp)
        assert r.status == "NOERROR" and "aa" in r.flags, r
        assert r.answers == [(f"llm.{ZONE}.", "A", "100.1.1.1")]
        r = dig(p.dns_port, f"LLM.{ZONE.upper()}", "AAAA", tcp=tcp)
        assert r.answers == [(f"LLM.{ZONE.upper()}.", "AAAA", "2001:db8::1")]
        assert r.sections["ANSWER"][0][1] == "60"

        r = dig(p.dns_port, ZONE, "SOA", tcp=tcp)
        (name, rtype, value), = r.answers
        assert (name, rtype) == (f"{ZONE}.", "SOA")
        assert value.startswith(f"ns.{ZONE}. hostmaster.{ZONE}. ")
        r = dig(p.dns_port, ZONE, "NS", tcp=tcp)
        assert r.answers == [(f"{ZONE}.", "NS", f"ns.{ZONE}.")]

        r = dig(p.dns_port, f"missing.{ZONE}", "A", tcp=tcp)
        assert r.status == "NXDOMAIN" and "aa" in r.flags
        assert r.answers == []
        assert [a[1] for a in r.authority] == ["SOA"]

        r = dig(p.dns_port, "www.example.com", "A", tcp=tcp)
        assert r.status == "REFUSED" and r.answers == []

        # Existing names without the type, and a name that exists only
        # because one below it does: NOERROR, no answer, the SOA.
        for name, rtype in ((f"llm.{ZONE}", "TXT"), (f"sub.{ZONE}", "A")):
            r = dig(p.dns_port, name, rtype, tcp=tcp)
            assert r.status == "NOERROR" and r.answers == [], r
            assert [a[1] for a in r.authority] == ["SOA"]


def test_a_change_answers_at_once(dns_portico):
    p = dns_portico
    put_record(p, "svc", "A", "10.0.0.1")
    assert dig(p.dns_port, f"svc.{ZONE}").answers == [(f"svc.{ZONE}.", "A", "10.0.0.1")]
    serial = int(dig(p.dns_port, ZONE, "SOA").answers[0][2].split()[2])
    r = put_record(p, "svc", "A", "10.0.0.2")
    assert r.status == 200 and r.json["changed"] is True
    # No wait: the very next query sees the new value, over both transports.
    assert dig(p.dns_port, f"svc.{ZONE}").answers == [(f"svc.{ZONE}.", "A", "10.0.0.2")]
    assert dig(p.dns_port, f"svc.{ZONE}", tcp=True).answers == [(f"svc.{ZONE}.", "A", "10.0.0.2")]
    assert int(dig(p.dns_port, ZONE, "SOA").answers[0][2].split()[2]) > serial
    same = put_record(p, "svc", "A", "10.0.0.2")
    assert same.status == 200 and same.json["changed"] is False

    assert p.api("DELETE", f"/dns/records/svc").status == 200
    assert dig(p.dns_port, f"svc.{ZONE}").status == "NXDOMAIN"
    assert p.api("DELETE", "/dns/records/svc").error_code == "DNS_RECORD_NOT_FOUND"


def test_records_api_and_zone_file(dns_portico):
    p = dns_portico
    put_record(p, "a", "A", "192.0.2.1")
    put_record(p, "a", "AAAA", "2001:DB8:0:0::5")
    put_record(p, "@", "A", "192.0.2.100")
    got = p.api("GET", "/dns/records/a")
    assert got.status == 200
    assert got.json["name"] == f"a.{ZONE}"
    assert sorted((r["type"], r["value"]) for r in got.json["records"]) == [("A", "192.0.2.1"),
                                                                           ("AAAA", "2001:db8::5")]
    listed = p.api("GET", "/dns/records").json
    assert {(r["name"], r["type"], r["source"]) for r in listed} == {
        (f"a.{ZONE}", "A", "api"), (f"a.{ZONE}", "AAAA", "api"), (ZONE, "A", "api")}
    assert p.api("GET", "/dns/records/nothing").error_code == "DNS_RECORD_NOT_FOUND"

    zone = p.api("GET", "/dns/zone")
    assert zone.status == 200
    assert zone.headers["content-type"].startswith("text/plain")
    assert f"$ORIGIN {ZONE}.\n" in zone.text
    assert "a\t300\tIN\tA\t192.0.2.1\t; api\n" in zone.text
    assert "a\t300\tIN\tAAAA\t2001:db8::5\t; api\n" in zone.text
    assert "@\t300\tIN\tA\t192.0.2.100\t; api\n" in zone.text
    assert f"@\t300\tIN\tNS\tns.{ZONE}.\n" in zone.text

    # Only one type deleted with ?type=.
    r = p.api("DELETE", "/dns/records/a?type=AAAA")
    assert r.status == 200 and r.json["deleted_types"] == ["AAAA"]
    assert dig(p.dns_port, f"a.{ZONE}", "AAAA").answers == []
    assert dig(p.dns_port, f"a.{ZONE}", "A").answers == [(f"a.{ZONE}.", "A", "192.0.2.1")]

    check = p.api("GET", "/proxy-manager/health").json["checks"]["dns"]
    assert check["ok"] is True and check["zone"] == ZONE and check["records"] == 2
    assert check["listen"] == f"127.0.0.1:{p.dns_port}"
    assert check["serial"] == int(dig(p.dns_port, ZONE, "SOA").answers[0][2].split()[2])

    # Records live in the store: a restart serves them again.
    p.restart()
    assert dig(p.dns_port, f"a.{ZONE}", "A").answers == [(f"a.{ZONE}.", "A", "192.0.2.1")]


def test_record_validation(dns_portico):
    p = dns_portico
    cases = [
        ("www.example.org.", {"type": "A", "value": "192.0.2.1"}, "name"),
        ("bad_name", {"type": "A", "value": "192.0.2.1"}, "name"),
        ("ok", {"type": "A", "value": "2001:db8::1"}, "value"),
        ("ok", {"type": "AAAA", "value": "192.0.2.1"}, "value"),
        ("ok", {"type": "CNAME", "value": "x"}, "type"),
        ("ok", {"type": "A", "value": "192.0.2.1", "ttl": 0}, "ttl"),
        ("ok", {"type": "A", "value": "192.0.2.1", "extra": 1}, "extra"),
        ("ok", {"type": "A", "value": "not-an-ip"}, "value"),
    ]
    for name, body, field in cases:
        r = p.api("PUT", f"/dns/records/{name}", body=body)
        assert (r.status, r.error_code) == (400, "INVALID_CONFIG"), (name, body, r)
        assert field in r.json["error"]["details"]["fields"], r
    assert p.api("DELETE", "/dns/records/ok?type=MX").status == 400
    assert p.api("GET", "/dns/records").json == []
    failures = [e for e in p.api("GET", "/audit").json if e["action"] == "dns.put" and e["result"] == "failure"]
    assert len(failures) == len(cases)


def test_without_a_zone_dns_is_not_configured(portico):
    p = portico()
    for method, path in (("GET", "/dns/records"), ("GET", "/dns/zone"), ("PUT", "/dns/records/x")):
        r = p.api(method, path, body={"type": "A", "value": "192.0.2.1"} if method == "PUT" else None)
        assert (r.status, r.error_code) == (409, "DNS_NOT_CONFIGURED"), r
    # dns_listen without a zone is refused at start.
    bad = portico(settings={"dns_listen": f"127.0.0.1:{free_dns_port()}"}, start=False)
    bad.start(wait=False)
    assert bad.proc.wait(timeout=30) != 0
    assert "dns_zone" in bad.read_log()


def test_proxies_with_dns_flag_publish_the_proxy_ip(dns_portico, upstream):
    p = dns_portico
    up = upstream()
    r = p.put_proxy("app", proxy_body(f"app.{ZONE}", up.port, dns=True))
    assert r.status == 201, r
    assert dig(p.dns_port, f"app.{ZONE}").answers == [(f"app.{ZONE}.", "A", "127.0.0.1")]
    listed = p.api("GET", "/dns/records").json
    assert [(e["name"], e["source"]) for e in listed] == [(f"app.{ZONE}", "proxy:app")]
    # A proxy without the flag, or outside the zone, publishes nothing.
    assert p.put_proxy("quiet", proxy_body(f"quiet.{ZONE}", up.port)).status == 201
    assert dig(p.dns_port, f"quiet.{ZONE}").status == "NXDOMAIN"
    # The record goes with the flag, and with the proxy.
    r = p.api("DELETE", "/dns/records/app")
    assert r.status == 404 and r.json["error"]["details"]["published_by"] == "proxy:app"
    assert p.put_proxy("app", proxy_body(f"app.{ZONE}", up.port, dns=False)).status == 200
    assert dig(p.dns_port, f"app.{ZONE}").status == "NXDOMAIN"
    assert p.put_proxy("app", proxy_body(f"app.{ZONE}", up.port, dns=True)).status == 200
    assert dig(p.dns_port, f"app.{ZONE}").status == "NOERROR"
    assert p.api("DELETE", "/proxies/app").status == 200
    assert dig(p.dns_port, f"app.{ZONE}").status == "NXDOMAIN"


def good_answer_after(p):
    answer = udp_exchange(p.dns_port, query(f"ns-check.{ZONE}", qid=0x7777), timeout=5.0)
    assert answer is not None and qid(answer) == 0x7777 and rcode(answer) == 3  # NXDOMAIN


def test_malformed_packets_get_formerr_or_nothing(dns_portico):
    p = dns_portico
    put_record(p, "www", "A", "192.0.2.10")
    good = query(f"www.{ZONE}")
    header = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 1)
    loop_at = len(header) + len(good) - 12
    hostile = {
        "empty": b"",
        "short header": good[:7],
        "truncated name": good[:20],
        "truncated type": good[:-3],
        "compression loop": header + good[12:] + struct.pack(">H", 0xC000 | loop_at) + struct.pack(">HHIH", 1, 1, 0, 0),
        "forward pointer": header + good[12:] + struct.pack(">H", 0xC000 | (loop_at + 2)) + struct.pack(">HHIH", 1, 1, 0, 0),
        "pointer in question": struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + b"\0\1\0\1",
        "label too long": struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + b"\x40" + b"a" * 64 + b"\0\0\1\0\1",
        "oversized without EDNS": good + b"\0" * 600,
        "oversized beyond any UDP query": good + b"\0" * 5000,
        "random bytes": os.urandom(300),
        "a response": query(f"www.{ZONE}", flags=0x8180),
    }
    for what, data in hostile.items():
        answer = udp_exchange(p.dns_port, data, timeout=0.5)
        if answer is not None:
            assert len(answer) >= 12, what
            assert rcode(answer) in (1, 4), (what, answer)  # FORMERR (or NOTIMP for a random opcode)
            assert qid(answer) == struct.unpack(">H", data[:2])[0], what
            assert answer[6:8] == b"\0\0", what  # no answer records
        else:
            assert what in ("empty", "short header", "oversized beyond any UDP query", "a response") \
                or data[2] & 0x80, what
        good_answer_after(p)
    for what in ("truncated name", "compression loop", "forward pointer", "label too long",
                 "oversized without EDNS", "pointer in question"):
        answer = udp_exchange(p.dns_port, hostile[what], timeout=2.0)
        assert answer is not None and rcode(answer) == 1, what

    # Over TCP: a length prefix shorter than a header closes the
    # connection; a framed garbage message gets FORMERR; silence times out.
    with socket.create_connection(("127.0.0.1", p.dns_port), timeout=5) as s:
        s.sendall(b"\x00\x03abc")
        assert s.recv(10) == b""
    with socket.create_connection(("127.0.0.1", p.dns_port), timeout=5) as s:
        bad = hostile["compression loop"]
        s.sendall(struct.pack(">H", len(bad)) + bad)
        size = struct.unpack(">H", s.recv(2))[0]
        body = b""
        while len(body) < size:
            body += s.recv(size - len(body))
        assert rcode(body) == 1
    with socket.create_connection(("127.0.0.1", p.dns_port), timeout=30) as s:
        s.sendall(b"\x00")  # half a length, then nothing: the server hangs up
        assert s.recv(10) == b""
    r = dig(p.dns_port, f"www.{ZONE}", tcp=True)
    assert r.answers == [(f"www.{ZONE}.", "A", "192.0.2.10")]
    r = dig(p.dns_port, f"www.{ZONE}")
    assert r.answers == [(f"www.{ZONE}.", "A", "192.0.2.10")]


def cli(p, *args):
    env = dict(os.environ, PORTICO_URL=f"http://127.0.0.1:{p.api_port}")
    return subprocess.run([BIN, *args], env=env, capture_output=True, text=True, timeout=60)


def test_cli(dns_portico):
    p = dns_portico
    r = cli(p, "dns", "put", "cli", "--type=A", "--value=198.51.100.9", "--ttl=120")
    assert r.returncode == 0, r.stderr
    assert f"cli.{ZONE} A 198.51.100.9 ttl 120" in r.stdout
    assert dig(p.dns_port, f"cli.{ZONE}").answers == [(f"cli.{ZONE}.", "A", "198.51.100.9")]
    r = cli(p, "dns", "list")
    assert f"cli.{ZONE}" in r.stdout and "198.51.100.9" in r.stdout
    r = cli(p, "dns", "list", "--json")
    assert json.loads(r.stdout)[0]["value"] == "198.51.100.9"
    r = cli(p, "dns", "zone")
    assert r.returncode == 0 and "cli\t120\tIN\tA\t198.51.100.9" in r.stdout
    assert cli(p, "dns", "delete", "cli").returncode == 0
    r = cli(p, "dns", "delete", "cli")
    assert r.returncode == 1 and "DNS_RECORD_NOT_FOUND" in r.stderr
    assert cli(p, "dns", "put", "cli", "--value=1.2.3.4").returncode == 2
