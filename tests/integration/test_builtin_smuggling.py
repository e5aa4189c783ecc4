"""Request smuggling (research/reliability.md §2): each attack is sent as
raw bytes through the builtin data plane to an upstream that logs every
byte it receives.  Refused requests are answered with their status and
the connection is closed; the upstream's log then shows that nothing
smuggled reached it."""

import pytest

from conftest import Portico
from dp_util import Conn, RawUpstream, echo_handler, request_bytes, route

H = b"Host: s.test\r\n"
MARK = b"SMUGGLED"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    up = RawUpstream(echo_handler)
    p = Portico(tmp_path_factory.mktemp("smuggling")).start()
    route(p, "s", "s.test", up.port)
    route(p, "admin", "s.test", up.port, path_prefix="/admin")
    yield p, up
    p.stop()
    up.close()


def send(p, data, method="GET"):
    c = Conn(p.http_port, timeout=10)
    try:
        c.send(data)
        r = c.read_response(method=method)
        r.closed = c.closed_by_peer(timeout=3.0) if r.status >= 400 else None
        r.rest = c.buf
        return r
    finally:
        c.close()


# (row, bytes, status).  Every refused one must also close the connection
# and leave nothing of itself at the upstream.
REFUSED = [
    ("1 CL.TE", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"
     + b"ET /SMUGGLED HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("1 TE.CL", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED"
     b"\r\n0\r\n\r\n", 400),
    ("2 two CL", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nSMUGGLED", 400),
    ("2 CL +5", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nSMUGGLED", 400),
    ("2 CL -1", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\nSMUGGLED", 400),
    ("2 CL 0x5", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nSMUGGLED", 400),
    ("2 CL 5 5", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5 5\r\n\r\nSMUGGLED", 400),
    ("2 CL empty", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: \r\n\r\nSMUGGLED", 400),
    ("2 CL 20 digits", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 10000000000000000000\r\n\r\nSMUGGLED", 400),
    ("3 TE chunked, gzip", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n8\r\nSMUGGLED\r\n"
     b"0\r\n\r\n", 400),
    ("3 TE gzip", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nSMUGGLED", 400),
    ("3 TE chunked, chunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n8\r\n"
     b"SMUGGLED\r\n0\r\n\r\n", 400),
    ("3 two TE", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"8\r\nSMUGGLED\r\n0\r\n\r\n", 400),
    ("4 TE identity", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\nContent-Length: 8\r\n\r\nSMUGGLED",
     400),
    ("4 TE identity alone", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\nSMUGGLED", 501),
    ("4 TE xchunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\nSMUGGLED", 501),
    ("5 TE space colon", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
     400),
    ("5 TE obs-fold", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n chunked\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
     400),
    ("5 TE vtab", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: \x0bchunked\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
     400),
    ("5 TE nul", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\x00\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
     400),
    ("5 Transfer_Encoding", b"POST / HTTP/1.1\r\n" + H + b"Transfer_Encoding: chunked\r\n\r\n8\r\nSMUGGLED\r\n0\r\n"
     b"\r\n", 400),
    ("6 TE in HTTP/1.0", b"POST / HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
     400),
    ("10 bare CR in value", b"GET /SMUGGLED HTTP/1.1\r\n" + H + b"X: a\rb\r\n\r\n", 400),
    ("10 NUL in value", b"GET /SMUGGLED HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", 400),
    ("10 space in name", b"GET /SMUGGLED HTTP/1.1\r\n" + H + b"X Y: 1\r\n\r\n", 400),
    ("10 empty name", b"GET /SMUGGLED HTTP/1.1\r\n" + H + b": x\r\n\r\n", 400),
    ("10 leading white space", b"GET /SMUGGLED HTTP/1.1\r\n X: 1\r\n" + H + b"\r\n", 400),
    ("10 bare LF", b"GET /SMUGGLED HTTP/1.1\n" + H + b"\r\n", 400),
    ("12 no Host", b"GET /SMUGGLED HTTP/1.1\r\n\r\n", 400),
    ("12 two Hosts", b"GET /SMUGGLED HTTP/1.1\r\n" + H + b"Host: other.test\r\n\r\n", 400),
    ("12 Host list", b"GET /SMUGGLED HTTP/1.1\r\nHost: s.test, other.test\r\n\r\n", 400),
    ("12 Host userinfo", b"GET /SMUGGLED HTTP/1.1\r\nHost: a@s.test\r\n\r\n", 400),
    ("12 Host slash", b"GET /SMUGGLED HTTP/1.1\r\nHost: s.test/x\r\n\r\n", 400),
    ("12 Host bad port", b"GET /SMUGGLED HTTP/1.1\r\nHost: s.test:99999\r\n\r\n", 400),
    ("14 authority-form", b"GET s.test:80 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("14 asterisk GET", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("14 CONNECT", b"CONNECT s.test:443 HTTP/1.1\r\n" + H + b"\r\n", 405),
    ("16 above root", b"GET /../SMUGGLED HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("17 percent", b"GET /%SMUGGLED HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("17 %zz", b"GET /%zzSMUGGLED HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("17 %00", b"GET /%00SMUGGLED HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("17 hash", b"GET /#SMUGGLED HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("17 backslash", b"GET /\\SMUGGLED HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("21 Expect foo", b"POST /SMUGGLED HTTP/1.1\r\n" + H + b"Expect: foo\r\nContent-Length: 1\r\n\r\nx", 417),
]

# Refused only once the head was forwarded and the body turned out bad:
# the upstream saw a partial request and a closed connection, never the
# bytes behind the error as a request of their own.
BAD_BODY = [
    ("7 chunk size overflow", b"FFFFFFFFFFFFFFFFF1\r\nSMUGGLED\r\n0\r\n\r\n"),
    ("7 chunk size 0x5", b"0x5\r\nSMUGGLED\r\n0\r\n\r\n"),
    ("7 chunk size +5", b"+5\r\nSMUGGLED\r\n0\r\n\r\n"),
    ("7 chunk size space", b" 5\r\nSMUGGLED\r\n0\r\n\r\n"),
    ("7 runaway chunk", b"4\r\nSEE-SMUGGLED\r\n0\r\n\r\n"),
    ("7 bare LF chunk line", b"8\nSMUGGLED\r\n0\r\n\r\n"),
    ("7 CR in extension", b"8;a=\rb\r\nSMUGGLED\r\n0\r\n\r\n"),
    ("8 64 KiB extension", b"8;" + b"e" * 65536 + b"\r\nSMUGGLED\r\n0\r\n\r\n"),
]


@pytest.mark.parametrize("row,data,status", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_before_the_upstream(env, row, data, status):
    p, up = env
    before = len(up.received())
    r = send(p, data)
    assert r.status == status, r
    assert r.closed, "the connection must be closed after a refused request"
    assert r.rest == b""
    assert len(up.received()) == before, f"{row}: bytes reached the upstream"


@pytest.mark.parametrize("row,body", BAD_BODY, ids=[r[0] for r in BAD_BODY])
def test_bad_chunked_body(env, row, body):
    p, up = env
    up.reset()
    r = send(p, b"POST /b HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert r.status == 400 and r.closed, r
    assert MARK not in up.received(), f"{row}: the smuggled bytes reached the upstream"
    assert all(req["target"] == "/b" for req in up.requests) and len(up.requests) <= 1


def test_nothing_smuggled_ever_reached_the_upstream(env):
    p, up = env
    # Run after the others in this module: the whole log, every connection.
    assert MARK not in up.received()
    assert b"/admin" not in up.received()


def test_tolerated_forms_are_forwarded_canonically(env):
    p, up = env
    up.reset()
    # "5, 5" is one length; forwarded as a single Content-Length.
    r = send(p, b"POST /cl HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello")
    assert r.status == 200 and r.body == b"POST /cl 5"
    fwd = up.requests[-1]["headers"]
    assert [v for k, v in fwd if k == "content-length"] == ["5"]
    # Chunk extensions are dropped; trailer fields never become headers.
    r = send(p, b"POST /ext HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                b"5;a=b\r\nhello\r\n0\r\nContent-Length: 99\r\nHost: evil.test\r\n\r\n")
    assert r.status == 200 and r.body == b"POST /ext 5"
    raw = up.received()
    assert b"evil.test" not in raw and b"a=b" not in raw and b"Content-Length: 99" not in raw
    # Dot segments and %2E are resolved before routing, and the upstream
    # gets exactly the path that was routed; %2F is never a slash.
    for target, fwd_target in ((b"/x/..%2fadmin", "/x/..%2Fadmin"), (b"/a/%2e%2E/admin/p", "/admin/p"),
                               (b"//admin", "/admin"), (b"/p%2F..%2Fadmin", "/p%2F..%2Fadmin")):
        r = send(p, b"GET " + target + b" HTTP/1.1\r\n" + H + b"\r\n")
        assert r.status == 200 and r.body == f"GET {fwd_target} 0".encode(), (target, r)


def test_upgrade_without_connection_upgrade_is_ignored(env):
    p, up = env
    up.reset()
    for req in (b"GET /u HTTP/1.1\r\n" + H + b"Upgrade: websocket\r\n\r\n",
                b"GET /u HTTP/1.0\r\n" + H + b"Upgrade: websocket\r\nConnection: upgrade\r\n\r\n",
                b"GET /u HTTP/1.1\r\n" + H + b"Upgrade: h2c\r\nConnection: upgrade, HTTP2-Settings\r\n"
                b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"):
        r = send(p, req)
        assert r.status == 200 and r.body == b"GET /u 0"
    for req in up.requests:
        names = [k for k, _ in req["headers"]]
        assert "upgrade" not in names and "http2-settings" not in names and "connection" not in names


def test_pipelined_requests_after_a_refused_one_are_dropped(env):
    p, up = env
    up.reset()
    r = send(p, b"GET /ok HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx"
                b"GET /SMUGGLED HTTP/1.1\r\n" + H + b"\r\n")
    assert r.status == 400 and r.closed
    assert up.received() == b""
