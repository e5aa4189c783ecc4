"""Two portico nodes sharing one store (DESIGN §1): a change committed
through one node reaches the other node's data plane without a call to
it (store_poll_interval_ms), a change made through a node starts from the
other's changes, and a node does not re-apply its own writes.  Every test
runs twice: on one SQLite file both nodes open, and on one PostgreSQL
database (a private server, pgutil.py)."""
import socket
import ssl

import pytest

from conftest import proxy_body, wait_until
from dnsutil import dig, free_dns_port
from dp_util import make_cert, put_cert
from pgutil import pg  # noqa: F401 (fixture)

FOLLOWED = "applied the state another node committed"


ZONE = "internal.test"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'shared.db'}"
    return request.getfixturevalue("pg").new_database()[1]


def nodes(portico, store):
    made = []
    for name in ("a", "b"):
        port = free_dns_port()
        settings = {"store": store, "store_poll_interval_ms": "200", "dns_zone": ZONE,
                    "dns_listen": f"127.0.0.1:{port}", "dns_proxy_ip": "127.0.0.1"}
        node = portico(settings=settings, name=name)
        node.dns_port = port
        made.append(node)
    return made


def served_by(node, domain):
    r = node.get(domain, "/x")
    return r.status == 200 and r.json["path"] == "/x"


def names(node):
    r = node.api("GET", "/proxies")
    assert r.status == 200, r
    return sorted(p["droplet_name"] for p in r.json)


def followed(node):
    return [r for r in node.log_records() if r.get("msg") == FOLLOWED]


def peer_cert(port, sni):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=sni) as t:
            return t.getpeercert(binary_form=True)


def test_a_change_on_one_node_reaches_the_other(portico, upstream, store):
    a, b = nodes(portico, store)
    up = upstream()

    r = a.put_proxy("orders", proxy_body("orders.test", up.port))
    assert r.status == 201, r
    assert served_by(a, "orders.test")
    # b makes no call: its follower finds the new generation and applies it.
    wait_until(lambda: served_by(b, "orders.test"), timeout=10, what="b serves a's route")
    assert names(b) == ["orders"]
    rec = followed(b)[-1]
    assert rec["revision"] == 1 and rec["proxies"] == 1

    # The audit trail, one for both, says which node did what.
    ids = {n: (n.state_dir / "node_id").read_text().strip() for n in (a, b)}
    assert len(set(ids.values())) == 2
    put = [e for e in b.api("GET", "/audit").json if e["action"] == "proxy.put"]
    assert put and all(e["node"] == ids[a] for e in put)

    # A change through b starts from a's change: both proxies, one store.
    r = b.put_proxy("billing", proxy_body("billing.test", up.port))
    assert r.status == 201, r
    assert r.json["revision"] == 2
    assert names(b) == ["billing", "orders"]
    wait_until(lambda: served_by(a, "billing.test"), timeout=10, what="a serves b's route")
    assert names(a) == ["billing", "orders"]

    # A delete travels the same way; the route stops being served.
    assert a.api("DELETE", "/proxies/orders").status == 200
    wait_until(lambda: b.get("orders.test", "/x").status == 404, timeout=10, what="b drops the route")
    assert served_by(b, "billing.test")

    # Each node applied only the other's changes: a followed b's put, b
    # followed a's put and delete; none of its own writes came back.
    wait_until(lambda: len(followed(b)) == 2 and len(followed(a)) == 1, timeout=10, what="follow counts")
    revisions = [x["revision"] for x in b.api("GET", "/revisions").json]
    assert revisions == [3, 2, 1]


def test_a_certificate_reaches_the_other_node(portico, upstream, store, tmp_path):
    a, b = nodes(portico, store)
    up = upstream()
    cert, key, path = make_cert(tmp_path, "shop.test")
    put_cert(a, "shop.test", cert, key)
    r = a.put_proxy("shop", proxy_body("shop.test", up.port, enable_ssl=True))
    assert r.status == 201, r

    with open(path) as f:
        want = ssl.PEM_cert_to_DER_cert(f.read())
    wait_until(lambda: served_by(b, "shop.test") or b.get("shop.test").status == 301, timeout=10,
               what="b has the route")
    wait_until(lambda: peer_cert(b.https_port, "shop.test") == want, timeout=10, what="b serves a's certificate")
    listed = b.api("GET", "/certificates").json
    assert [c["domain"] for c in listed] == ["shop.test"]
    # The key never leaves the store through the API, on either node.
    assert "PRIVATE KEY" not in b.api("GET", "/certificates/shop.test").text


def test_the_follower_survives_a_restart_of_the_other_node(portico, upstream, store):
    a, b = nodes(portico, store)
    up = upstream()
    assert a.put_proxy("one", proxy_body("one.test", up.port)).status == 201
    wait_until(lambda: served_by(b, "one.test"), timeout=10, what="b serves one")
    b.restart()
    assert served_by(b, "one.test")
    assert a.put_proxy("two", proxy_body("two.test", up.port)).status == 201
    wait_until(lambda: served_by(b, "two.test"), timeout=10, what="restarted b serves two")


def test_a_dns_record_reaches_the_other_responder(portico, store):
    a, b = nodes(portico, store)
    r = a.api("PUT", "/dns/records/llm", body={"type": "A", "value": "100.1.1.1"})
    assert r.status == 201, r
    want = [(f"llm.{ZONE}.", "A", "100.1.1.1")]
    wait_until(lambda: dig(b.dns_port, f"llm.{ZONE}").answers == want, timeout=10, what="b answers a's record")
    assert b.api("DELETE", "/dns/records/llm").status == 200
    wait_until(lambda: dig(a.dns_port, f"llm.{ZONE}").status == "NXDOMAIN", timeout=10, what="a drops it")
    # Records are not the routing state: neither node touched its engine.
    assert followed(a) == [] and followed(b) == []
