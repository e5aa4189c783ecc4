"""The builtin data plane through the real binary: routing, forwarded
headers, portico's own answers, keep-alive and pipelining, bodies both
ways, bodyless responses, Expect, request ids and the access log.  Routes
are made through the admin API."""

import json
import time

import pytest

from dp_util import Conn, raw, raw_upstream, reply, request_bytes, route  # noqa: F401 (fixture)


@pytest.fixture
def dp(portico, tmp_path):
    return portico(settings={"access_log": str(tmp_path / "access.log"), "max_body_size": "64k",
                             "trusted_proxies": "10.9.0.0/16"})


def test_routing_exact_wildcard_prefix_strip(dp, raw_upstream):
    a, b, c, d = raw_upstream(), raw_upstream(), raw_upstream(), raw_upstream()
    route(dp, "root", "example.com", a.port)
    route(dp, "api", "example.com", b.port, path_prefix="/api", strip_prefix=True)
    route(dp, "wild", "*.example.com", c.port)
    route(dp, "apikeep", "example.com", d.port, path_prefix="/api/v2")

    def get(host, path):
        r = raw(dp.http_port, request_bytes(host, path))
        return r.status, r.body.decode()

    assert get("example.com", "/x?q=1") == (200, "GET /x?q=1 0")
    assert get("example.com", "/api") == (200, "GET / 0")          # strip: /api -> /
    assert get("example.com", "/api/users?id=3") == (200, "GET /users?id=3 0")
    assert get("example.com", "/apix") == (200, "GET /apix 0")      # segment boundary: not /api
    assert get("example.com", "/api/v2/z") == (200, "GET /api/v2/z 0")  # longest prefix, no strip
    assert get("www.example.com", "/w") == (200, "GET /w 0")
    assert get("a.b.example.com", "/w") == (200, "GET /w 0")
    # Host normalised: case, trailing dot and port.
    assert get("EXAMPLE.com.:8080", "/n") == (200, "GET /n 0")
    # One path normalisation for routing and forwarding; query kept as sent.
    assert get("example.com", "/x/../api/%7Euser/./a//b?%41=1") == (200, "GET /~user/a/b?%41=1 0")
    assert [r["target"] for r in b.requests] == ["/", "/users?id=3", "/~user/a/b?%41=1"]
    assert [r["target"] for r in c.requests] == ["/w", "/w"]
    assert [r["target"] for r in a.requests] == ["/x?q=1", "/apix", "/n"]
    # Unknown host: 404 ROUTE_NOT_FOUND, never the first route.
    cc = Conn(dp.http_port)
    cc.send(request_bytes("unknown.org", "/"))
    r = cc.read_response()
    assert r.status == 404 and json.loads(r.body)["error"]["code"] == "ROUTE_NOT_FOUND"
    cc.send(request_bytes("example.com", "/after-404"))
    assert cc.read_response().status == 200  # a 404 keeps the connection
    cc.close()
    # Absolute-form wins over Host and is forwarded as the Host.
    r = raw(dp.http_port, b"GET http://www.example.com/abs HTTP/1.1\r\nHost: unknown.org\r\n\r\n")
    assert r.status == 200 and r.body == b"GET /abs 0"
    assert dict(c.requests[-1]["headers"])["host"] == "www.example.com"


def test_forwarded_headers(dp, raw_upstream):
    up = raw_upstream()
    route(dp, "h", "h.test", up.port, security_headers=True)
    r = raw(dp.http_port, request_bytes("h.test", "/", headers={
        "X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6", "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil", "Connection": "keep-alive, X-Secret, Foo", "X-Secret": "s", "Foo": "f",
        "Keep-Alive": "timeout=5", "Proxy-Connection": "x", "TE": "trailers", "Upgrade": "h2c",
        "X-Request-ID": "abc-123", "X-Other": "kept"}))
    assert r.status == 200
    h = dict(up.requests[-1]["headers"])
    assert h["x-forwarded-for"] == "127.0.0.1"      # overwritten at the edge
    assert h["x-real-ip"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == "h.test"
    assert h["x-forwarded-port"] == str(dp.http_port)
    assert h["host"] == "h.test"
    assert h["x-request-id"] == "abc-123"
    assert h["x-other"] == "kept"
    for gone in ("x-secret", "foo", "keep-alive", "proxy-connection", "te", "upgrade", "connection"):
        assert gone not in h, gone
    names = [k for k, _ in up.requests[-1]["headers"]]
    assert names.count("x-forwarded-for") == 1 and names.count("host") == 1
    # The response: security headers, our request id, hop-by-hop removed.
    assert r.header("x-content-type-options") == "nosniff"
    assert r.header("x-frame-options") == "SAMEORIGIN"
    assert r.header("x-xss-protection") == "1; mode=block"
    assert r.header("x-request-id") == "abc-123"
    assert r.header("date")


def test_security_headers_not_duplicated_and_optional(dp, raw_upstream):
    def handler(peer, up):
        while (req := peer.read_head()) is not None:
            peer.read_body(req)
            peer.send(reply(200, b"x", {"X-Frame-Options": "DENY", "Connection": "keep-alive, X-Up-Secret",
                                        "X-Up-Secret": "1", "Keep-Alive": "timeout=3"}))

    up = raw_upstream(handler)
    route(dp, "s1", "s1.test", up.port, security_headers=True)
    route(dp, "s2", "s2.test", up.port, security_headers=False)
    r = raw(dp.http_port, request_bytes("s1.test"))
    assert r.all("x-frame-options") == ["DENY"]
    assert r.header("x-content-type-options") == "nosniff"
    assert r.header("x-up-secret") is None and r.header("keep-alive") is None
    r = raw(dp.http_port, request_bytes("s2.test"))
    assert r.header("x-content-type-options") is None and r.header("x-xss-protection") is None


def test_own_answers_for_bad_requests(dp, raw_upstream):
    up = raw_upstream()
    route(dp, "o", "o.test", up.port)
    up.reset()
    cases = [
        (b"GET / HTTP/1.1\r\nHost: o.test\r\nX Y: 1\r\n\r\n", 400, "BAD_REQUEST"),
        (b"GET /../x HTTP/1.1\r\nHost: o.test\r\n\r\n", 400, "BAD_REQUEST"),
        (b"CONNECT o.test:443 HTTP/1.1\r\nHost: o.test\r\n\r\n", 405, "METHOD_NOT_ALLOWED"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: o.test\r\n\r\n", 414, "URI_TOO_LONG"),
        (b"GET / HTTP/1.1\r\nHost: o.test\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431, "HEADERS_TOO_LARGE"),
        (b"GET / HTTP/1.1\r\nHost: o.test\r\n" + (b"X-Big: " + b"b" * 8000 + b"\r\n") * 5 + b"\r\n", 431,
         "HEADERS_TOO_LARGE"),
        (b"POST / HTTP/1.1\r\nHost: o.test\r\nTransfer-Encoding: identity\r\n\r\n", 501, "NOT_IMPLEMENTED"),
        (b"GET / HTTP/1.1\r\nHost: o.test\r\nExpect: foo\r\n\r\n", 417, "EXPECTATION_FAILED"),
        (b"GET / HTTP/1.2\r\nHost: o.test\r\n\r\n", 505, "HTTP_VERSION_NOT_SUPPORTED"),
        (b"POST / HTTP/1.1\r\nHost: o.test\r\nContent-Length: 70000\r\n\r\n", 413, "PAYLOAD_TOO_LARGE"),
    ]
    for data, status, code in cases:
        r = raw(dp.http_port, data, check_close=True)
        assert r.status == status, (data[:60], r)
        err = json.loads(r.body)["error"]
        assert err["code"] == code
        assert err["details"]["request_id"] == r.header("x-request-id")
        assert r.header("content-type") == "application/json"
        assert r.closed, data[:60]
    assert up.received() == b""  # none of it reached the upstream


def test_route_body_limit_chunked_and_per_route(dp, raw_upstream):
    up = raw_upstream()
    route(dp, "small", "small.test", up.port, max_body_size=100)
    r = raw(dp.http_port, request_bytes("small.test", "/", "POST", body=b"x" * 100))
    assert r.status == 200 and r.body == b"POST / 100"
    r = raw(dp.http_port, request_bytes("small.test", "/", "POST", body=b"x" * 101), check_close=True)
    assert r.status == 413 and r.closed
    chunks = b"40\r\n" + b"y" * 64 + b"\r\n" + b"40\r\n" + b"y" * 64 + b"\r\n0\r\n\r\n"
    r = raw(dp.http_port, request_bytes("small.test", "/c", "POST", {"Transfer-Encoding": "chunked"}) + chunks,
            check_close=True)
    assert r.status == 413 and r.closed


def test_keepalive_and_pipelining_in_order(dp, raw_upstream):
    up = raw_upstream()
    route(dp, "p", "p.test", up.port)
    c = Conn(dp.http_port)
    c.send(request_bytes("p.test", "/1") + request_bytes("p.test", "/2", "POST", body=b"abc") +
           request_bytes("nope.test", "/3") + request_bytes("p.test", "/4", "HEAD"))
    r1, r2, r3 = c.read_response(), c.read_response(), c.read_response()
    r4 = c.read_response(method="HEAD")
    assert (r1.status, r1.body) == (200, b"GET /1 0")
    assert (r2.status, r2.body) == (200, b"POST /2 3")
    assert r3.status == 404
    assert r4.status == 200 and r4.header("content-length") == str(len(b"HEAD /4 0"))
    # The connection stays usable.
    c.send(request_bytes("p.test", "/5"))
    assert c.read_response().body == b"GET /5 0"
    c.close()
    # One upstream connection served them all (pooled keep-alive).
    assert len({r["conn"] for r in up.requests}) == 1


def test_chunked_both_ways_and_close_delimited(dp, raw_upstream):
    def handler(peer, up):
        while (req := peer.read_head()) is not None:
            n = peer.read_body(req)
            up.record(req)
            if req["target"] == "/chunked":
                body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
                peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
            elif req["target"] == "/eof":
                peer.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-eof")
                return
            else:
                peer.send(reply(200, str(n).encode() + b":" + req.get("body", b"")))

    up = raw_upstream(handler)
    route(dp, "ch", "ch.test", up.port)
    c = Conn(dp.http_port)
    c.send(request_bytes("ch.test", "/up", "POST", {"Transfer-Encoding": "chunked"}) +
           b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer-X: 1\r\n\r\n")
    r = c.read_response()
    assert r.status == 200 and r.body == b"5:abcde"
    fwd = dict(up.requests[-1]["headers"])
    assert fwd["transfer-encoding"] == "chunked" and "content-length" not in fwd
    c.send(request_bytes("ch.test", "/chunked"))
    r = c.read_response()
    assert r.body == b"hello world" and r.header("transfer-encoding") == "chunked"
    assert r.header("x-trailer") is None
    # A close-delimited upstream body reaches an HTTP/1.1 client chunked,
    # and the client connection stays open.
    c.send(request_bytes("ch.test", "/eof"))
    r = c.read_response()
    assert r.body == b"until-eof" and r.header("transfer-encoding") == "chunked"
    c.send(request_bytes("ch.test", "/again"))
    assert c.read_response().status == 200
    c.close()
    # An HTTP/1.0 client gets it close-delimited.
    r = raw(dp.http_port, b"GET /eof HTTP/1.0\r\nHost: ch.test\r\n\r\n", check_close=True)
    assert r.body == b"until-eof" and r.header("transfer-encoding") is None and r.closed


def test_bodyless_responses(dp, raw_upstream):
    def handler(peer, up):
        while (req := peer.read_head()) is not None:
            peer.read_body(req)
            t = req["target"]
            if t == "/204":
                peer.send(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif t == "/304":
                peer.send(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 42\r\nETag: \"e\"\r\n\r\n")
            elif t == "/103":
                peer.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + reply(200, b"after"))
            elif req["method"] == "HEAD":
                peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
            else:
                peer.send(reply(200, b"ok"))

    up = raw_upstream(handler)
    route(dp, "bl", "bl.test", up.port)
    c = Conn(dp.http_port)
    c.send(request_bytes("bl.test", "/204"))
    r = c.read_response()
    assert r.status == 204 and r.header("content-length") is None and r.header("transfer-encoding") is None
    c.send(request_bytes("bl.test", "/304"))
    r = c.read_response()
    assert r.status == 304 and r.header("content-length") == "42" and r.header("etag") == '"e"'
    c.send(request_bytes("bl.test", "/h", "HEAD"))
    r = c.read_response(method="HEAD")
    assert r.status == 200 and r.header("content-length") == "1234"
    c.send(request_bytes("bl.test", "/103"))
    r = c.read_response()
    assert r.status == 200 and r.body == b"after"  # interim responses are not passed on
    c.send(request_bytes("bl.test", "/204"))
    assert c.read_response().status == 204
    assert c.buf == b""
    c.close()


def test_expect_100_continue_answered_by_portico(dp, raw_upstream):
    up = raw_upstream()
    route(dp, "e", "e.test", up.port)
    c = Conn(dp.http_port)
    c.send(b"POST /up HTTP/1.1\r\nHost: e.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    r = c.read_response()
    assert r.status == 100
    c.send(b"hello")
    r = c.read_response()
    assert r.status == 200 and r.body == b"POST /up 5"
    assert "expect" not in dict(up.requests[-1]["headers"])
    c.close()


def test_request_id_and_access_log(dp, raw_upstream, tmp_path):
    up = raw_upstream()
    route(dp, "logme", "log.test", up.port)
    r = raw(dp.http_port, request_bytes("log.test", "/a?b=1", headers={"X-Request-ID": "client-id-1"}))
    assert r.header("x-request-id") == "client-id-1"
    r2 = raw(dp.http_port, request_bytes("log.test", "/bad-id", headers={"X-Request-ID": "no spaces<>"}))
    gen = r2.header("x-request-id")
    assert len(gen) == 32 and dict(up.requests[-1]["headers"])["x-request-id"] == gen
    r3 = raw(dp.http_port, request_bytes("nowhere.test", "/"))
    assert r3.status == 404

    def lines():
        try:
            with open(tmp_path / "access.log") as f:
                return [json.loads(x) for x in f if x.strip()]
        except FileNotFoundError:
            return []

    from conftest import wait_until
    recs = wait_until(lambda: len(lines()) >= 3 and lines(), timeout=10, what="access log lines")
    by_id = {x["request_id"]: x for x in recs}
    a = by_id["client-id-1"]
    assert a["status"] == 200 and a["method"] == "GET" and a["host"] == "log.test" and a["target"] == "/a?b=1"
    assert a["route"] == "logme" and a["upstream"] == f"127.0.0.1:{up.port}" and a["client"] == "127.0.0.1"
    assert by_id[gen]["status"] == 200
    assert by_id[r3.header("x-request-id")]["status"] == 404


def test_trusted_proxy_appends_forwarded_for(portico, raw_upstream):
    # The peer 127.0.0.1 is trusted here: its X-Forwarded-* are kept, and
    # X-Forwarded-For is appended to.
    p = portico(settings={"trusted_proxies": "127.0.0.0/8"})
    up = raw_upstream()
    route(p, "t", "t.test", up.port)
    raw(p.http_port, request_bytes("t.test", "/", headers={"X-Forwarded-For": "1.2.3.4, 5.6.7.8",
                                                           "X-Forwarded-Proto": "https", "X-Real-IP": "1.2.3.4"}))
    h = dict(up.requests[-1]["headers"])
    assert h["x-forwarded-for"] == "1.2.3.4, 5.6.7.8, 127.0.0.1"
    assert h["x-forwarded-proto"] == "https" and h["x-real-ip"] == "1.2.3.4"
    raw(p.http_port, request_bytes("t.test", "/"))
    h = dict(up.requests[-1]["headers"])
    assert h["x-forwarded-for"] == "127.0.0.1" and h["x-forwarded-proto"] == "http"


def test_route_changes_take_effect_and_idle_connection_survives(dp, raw_upstream):
    a, b = raw_upstream(), raw_upstream()
    route(dp, "mv", "mv.test", a.port)
    c = Conn(dp.http_port)
    c.send(request_bytes("mv.test", "/1"))
    assert c.read_response().header("x-upstream-port") == str(a.port)
    route(dp, "mv", "mv.test", b.port)
    time.sleep(0.05)
    # The idle keep-alive connection was not dropped by the change and
    # routes on the new snapshot.
    c.send(request_bytes("mv.test", "/2"))
    assert c.read_response().header("x-upstream-port") == str(b.port)
    assert dp.api("DELETE", "/proxies/mv").status == 200
    c.send(request_bytes("mv.test", "/3"))
    assert c.read_response().status == 404
    c.close()
