"""Upstream failures through the builtin data plane, each caused for
real: a closed port (502, then 503 once passive health ejects it), a black
hole, resets before and during a response, malformed responses, stale
pooled connections; and weighted balancing."""

import json
import socket
import time

import pytest

from conftest import free_port
from dp_util import Conn, RawUpstream, raw, raw_upstream, reply, request_bytes, route  # noqa: F401 (fixture)


@pytest.fixture
def dp(portico):
    return portico(settings={"upstream_timeout_ms": "1500", "upstream_connect_timeout_ms": "1000"})


def error_of(r):
    return json.loads(r.body)["error"]


def test_closed_port_is_502_then_ejected_503(dp):
    port = free_port()  # nothing listens there
    # The API's verify request is the first refusal.
    route(dp, "gone", "gone.test", port)
    r = raw(dp.http_port, request_bytes("gone.test", "/"))
    assert r.status == 502
    e = error_of(r)
    assert e["code"] == "UPSTREAM_UNAVAILABLE" and e["details"]["request_id"] == r.header("x-request-id")
    # The client connection survives a 502 for a bodyless request.  The
    # third refusal in a row ejects the upstream (passive health): the
    # route has no healthy upstream left, 503.
    c = Conn(dp.http_port)
    c.send(request_bytes("gone.test", "/again"))
    assert c.read_response().status == 502
    c.send(request_bytes("gone.test", "/again"))
    r = c.read_response()
    assert r.status == 503 and error_of(r)["code"] == "NO_HEALTHY_UPSTREAM"
    c.close()


def test_black_hole_is_504(dp, raw_upstream):
    # A listening socket that never accepts: the kernel completes the
    # handshake, nobody ever answers.
    hole = raw_upstream(accept=False)
    route(dp, "hole", "hole.test", hole.port)
    t0 = time.monotonic()
    r = raw(dp.http_port, request_bytes("hole.test", "/"))
    assert r.status == 504 and error_of(r)["code"] == "UPSTREAM_TIMEOUT"
    assert time.monotonic() - t0 < 30


def test_silent_upstream_is_504(dp, raw_upstream):
    def silent(peer, up):
        peer.read_head()
        time.sleep(5)

    up = raw_upstream(silent)
    route(dp, "silent", "silent.test", up.port)
    r = raw(dp.http_port, request_bytes("silent.test", "/"))
    assert r.status == 504 and error_of(r)["code"] == "UPSTREAM_TIMEOUT"


def test_reset_before_head_is_502_and_malformed_responses_are_502(dp, raw_upstream):
    def handler(peer, up):
        req = peer.read_head()
        if req is None:
            return
        if req["verify"]:
            peer.send(reply(200, b"ok"))
            return
        t = req["target"]
        bad = {
            "/te-cl": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "/bad-cl": b"HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc",
            "/two-cl": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            "/fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n  folded\r\nContent-Length: 1\r\n\r\na",
            "/gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
            "/garbage": b"SSH-2.0-OpenSSH\r\n\r\n",
            "/bare-lf": b"HTTP/1.1 200 OK\nContent-Length: 1\n\na",
            "/bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        }
        if t == "/reset":
            peer.reset()
        elif t in bad:
            peer.send(bad[t])
            time.sleep(0.5)

    # One upstream per case: three failures in a row would eject it.
    for i, t in enumerate(("/reset", "/te-cl", "/bad-cl", "/two-cl", "/fold", "/gzip", "/garbage", "/bare-lf")):
        up = raw_upstream(handler)
        route(dp, f"bad{i}", f"bad{i}.test", up.port)
        r = raw(dp.http_port, request_bytes(f"bad{i}.test", t))
        assert r.status == 502, (t, r)
        assert error_of(r)["code"] == "UPSTREAM_UNAVAILABLE"
    # A body that turns out malformed after the head went out is cut short.
    up = raw_upstream(handler)
    route(dp, "badbody", "badbody.test", up.port)
    c = Conn(dp.http_port)
    c.send(request_bytes("badbody.test", "/bad-chunk"))
    r = c.read_response(allow_truncated=True)
    assert r.status == 200 and r.truncated
    c.close()


def test_response_cut_short_upstream_is_cut_short_to_client(dp, raw_upstream):
    def handler(peer, up):
        while (req := peer.read_head()) is not None:
            if req["verify"]:
                # Closed after the verify answer: a pooled connection would
                # keep this handler for the last request, whichever worker
                # pooled it.
                peer.send(reply(200, b"ok"))
                return
            up.record(req)
            if req["target"] == "/cl":
                peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000)
            else:
                peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n" + b"y" * 4096 + b"\r\n")
            time.sleep(0.2)
            peer.reset()
            return

    up = raw_upstream(handler)
    route(dp, "cut", "cut.test", up.port)
    for target, kept in (("/cl", b"x" * 5000), ("/chunked", b"y" * 4096)):
        c = Conn(dp.http_port)
        c.send(request_bytes("cut.test", target))
        r = c.read_response(allow_truncated=True)
        assert r.status == 200 and r.truncated, target
        # Every byte received before the reset was passed on, and no final
        # chunk was made up: the client can tell.
        assert r.body == kept
        c.close()
    # Those upstream connections were not pooled: the next request works.
    def ok(peer, up2):
        echo = peer.read_head()
        if echo is not None:
            peer.send(reply(200, b"fine"))
    up.handler = ok
    assert raw(dp.http_port, request_bytes("cut.test", "/after")).body == b"fine"


def test_stale_pooled_connection_retried_once_for_idempotent(dp, raw_upstream):
    # Each connection answers its first request, then reads the next one
    # and closes without an answer: the "upstream closed an idle
    # connection just as it was reused" race, made certain.
    def handler(peer, up):
        first = True
        while (req := peer.read_head()) is not None:
            peer.read_body(req)
            if not first:
                peer.reset()
                return
            first = False
            up.record(req)
            peer.send(reply(200, f"conn {peer.cid}".encode()))

    up = raw_upstream(handler)
    route(dp, "stale", "stale.test", up.port)
    c = Conn(dp.http_port)
    for i in range(4):
        c.send(request_bytes("stale.test", f"/g{i}"))
        r = c.read_response()
        assert r.status == 200, r  # a GET is retried on a fresh connection
    # A POST is not retried: its body could have been acted upon.
    c.send(request_bytes("stale.test", "/p", "POST", body=b"data"))
    r = c.read_response()
    assert r.status == 502
    c.close()


def test_weighted_round_robin(dp, raw_upstream):
    a, b = raw_upstream(), raw_upstream()
    body = {"domain": "wrr.test", "require_healthy": False,
            "upstreams": [{"host": "127.0.0.1", "port": a.port, "weight": 3},
                          {"host": "127.0.0.1", "port": b.port, "weight": 1}]}
    assert dp.put_proxy("wrr", body).status in (200, 201)
    a.reset()
    b.reset()
    c = Conn(dp.http_port)  # one connection: one worker's balancer
    seen = []
    for _ in range(40):
        c.send(request_bytes("wrr.test", "/"))
        seen.append(c.read_response().header("x-upstream-port"))
    c.close()
    assert seen.count(str(a.port)) == 30 and seen.count(str(b.port)) == 10
    # Smooth: never more than three of a's in a row.
    assert "aaaa" not in "".join("a" if s == str(a.port) else "b" for s in seen)
