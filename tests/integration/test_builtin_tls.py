"""TLS in the builtin data plane, with certificates the test makes with
openssl and uploads through PUT /certificates/{domain}: SNI choosing
between two domains, the HTTP to HTTPS redirect, a certificate replaced
while connections are open, session resumption, ALPN and protocol
versions."""

import socket
import ssl
import subprocess
import time
import zlib

import pytest

from dp_util import Conn, make_cert, put_cert, raw, raw_upstream, reply, request_bytes, route  # noqa: F401 (fixture)


@pytest.fixture
def dp(portico):
    return portico(settings={"workers": "2"})


def tls_connect(port, server_hostname, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = server_hostname is not None
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(s, server_hostname=server_hostname)


def https_get(port, host, cafile, path="/"):
    s = tls_connect(port, host, cafile)
    try:
        cert = s.getpeercert(binary_form=True)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        return data, cert
    finally:
        s.close()


def der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


@pytest.fixture
def two_domains(dp, raw_upstream, tmp_path):
    up = raw_upstream()
    ca, ka, pa = make_cert(tmp_path, "a.test")
    cb, kb, pb = make_cert(tmp_path, "b.test")
    put_cert(dp, "a.test", ca, ka)
    put_cert(dp, "b.test", cb, kb)
    r = route(dp, "a", "a.test", up.port, enable_ssl=True)
    assert r.json["ssl_enabled"] is True
    route(dp, "b", "b.test", up.port, enable_ssl=True)
    return up, pa, pb


def test_sni_picks_the_certificate(dp, two_domains):
    up, pa, pb = two_domains
    body, cert = https_get(dp.https_port, "a.test", pa, "/x")
    assert body.startswith(b"HTTP/1.1 200") and body.endswith(b"GET /x 0") and cert == der(pa)
    body, cert = https_get(dp.https_port, "b.test", pb, "/y")
    assert body.startswith(b"HTTP/1.1 200") and cert == der(pb)
    # The upstream is told the request came over HTTPS.
    assert dict(up.requests[-1]["headers"])["x-forwarded-proto"] == "https"
    assert dict(up.requests[-1]["headers"])["x-forwarded-port"] == str(dp.https_port)
    # A name without a certificate, or no SNI at all: the handshake fails
    # with unrecognized_name (never another domain's certificate).
    for name in ("c.test", None):
        with pytest.raises(ssl.SSLError) as e:
            tls_connect(dp.https_port, name, pa)
        assert "UNRECOGNIZED_NAME" in str(e.value).upper() or "ALERT" in str(e.value).upper()


def test_http_redirects_to_https(dp, two_domains):
    r = raw(dp.http_port, request_bytes("a.test", "/p/q?x=1&y=%20"))
    assert r.status == 301
    assert r.header("location") == f"https://a.test:{dp.https_port}/p/q?x=1&y=%20"
    r = raw(dp.http_port, request_bytes("A.TEST.", "/"))
    assert r.status == 301 and r.header("location") == f"https://a.test:{dp.https_port}/"


def test_redirect_follows_the_certificate(dp, raw_upstream, tmp_path):
    """enable_ssl without a certificate serves plain HTTP; the certificate's
    arrival turns on the redirect of a route that did not change, and its
    removal turns it off again (a change of certificates alone rebuilds
    the routes it concerns)."""
    up = raw_upstream()
    route(dp, "c", "c.test", up.port, enable_ssl=True)
    route(dp, "d", "d.test", up.port, enable_ssl=True)
    assert raw(dp.http_port, request_bytes("c.test", "/")).status == 200
    cc, kc, pc = make_cert(tmp_path, "c.test")
    put_cert(dp, "c.test", cc, kc)
    r = raw(dp.http_port, request_bytes("c.test", "/x"))
    assert r.status == 301 and r.header("location") == f"https://c.test:{dp.https_port}/x"
    body, cert = https_get(dp.https_port, "c.test", pc, "/y")
    assert body.startswith(b"HTTP/1.1 200") and cert == der(pc)
    assert raw(dp.http_port, request_bytes("d.test", "/")).status == 200
    assert dp.api("DELETE", "/certificates/c.test").status in (200, 204)
    assert raw(dp.http_port, request_bytes("c.test", "/")).status == 200
    assert raw(dp.http_port, request_bytes("d.test", "/")).status == 200


def test_certificate_replaced_while_connections_are_open(dp, two_domains, tmp_path):
    up, pa, pb = two_domains
    ca2, ka2, pa2 = make_cert(tmp_path, "a.test", tag="-2")
    both = tmp_path / "both.pem"
    both.write_text(open(pa).read() + open(pa2).read())
    s = tls_connect(dp.https_port, "a.test", str(both))
    assert s.getpeercert(binary_form=True) == der(pa)
    s.sendall(b"GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert s.recv(65536).startswith(b"HTTP/1.1 200")
    put_cert(dp, "a.test", ca2, ka2)
    # The open connection goes on with the certificate it started with.
    s.sendall(b"GET /2 HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert s.recv(65536).startswith(b"HTTP/1.1 200")
    s.close()
    # A new one gets the new certificate.
    body, cert = https_get(dp.https_port, "a.test", str(both), "/3")
    assert body.startswith(b"HTTP/1.1 200") and cert == der(pa2)


def s_client(port, *args, stdin=b""):
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                          input=stdin, capture_output=True, timeout=30)


def test_session_resumption_alpn_and_versions(dp, two_domains, tmp_path):
    sess = str(tmp_path / "sess.pem")
    req = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    for version in ("-tls1_3", "-tls1_2"):
        first = s_client(dp.https_port, "-servername", "a.test", version, "-sess_out", sess, "-ign_eof",
                         stdin=req)
        assert b"HTTP/1.1 200" in first.stdout, first.stdout[-2000:]
        assert b"New, TLSv1." in first.stdout
        # With two workers the next connection may land on the other one:
        # the ticket keys are shared, so any worker resumes it.
        for _ in range(3):
            again = s_client(dp.https_port, "-servername", "a.test", version, "-sess_in", sess, "-ign_eof",
                             stdin=req)
            assert b"Reused, TLSv1." in again.stdout, again.stdout[-2000:]
            assert b"HTTP/1.1 200" in again.stdout
    out = s_client(dp.https_port, "-servername", "a.test", "-alpn", "h2,http/1.1", stdin=b"")
    assert b"ALPN protocol: http/1.1" in out.stdout
    out = s_client(dp.https_port, "-servername", "a.test", "-tls1_1", stdin=b"")
    assert out.returncode != 0 and b"Cipher is (NONE)" in out.stdout + out.stderr or b"alert" in out.stderr


def test_bodies_both_ways_over_tls(dp, raw_upstream, tmp_path):
    def handler(peer, up):
        while (req := peer.read_head()) is not None:
            crc = [0]
            n = peer.read_body(req, sink=lambda b: crc.__setitem__(0, zlib.crc32(b, crc[0])))
            if req["target"] == "/down":
                body = bytes(range(256)) * (32 << 10)  # 8 MiB
                peer.send(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            else:
                peer.send(reply(200, f"{n} {crc[0]}".encode()))

    up = raw_upstream(handler)
    cert, key, path = make_cert(tmp_path, "big.test")
    put_cert(dp, "big.test", cert, key)
    route(dp, "big", "big.test", up.port, enable_ssl=True)
    c = Conn(0, sock=tls_connect(dp.https_port, "big.test", path))
    data = bytes(range(251)) * 40000
    c.send(f"POST /up HTTP/1.1\r\nHost: big.test\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    r = c.read_response()
    assert r.body == f"{len(data)} {zlib.crc32(data)}".encode()
    c.send(b"GET /down HTTP/1.1\r\nHost: big.test\r\n\r\n")
    r = c.read_response()
    assert r.body == bytes(range(256)) * (32 << 10)
    c.close()


def test_requests_read_ahead_over_tls(dp, raw_upstream, tmp_path):
    """OpenSSL reads ahead: the client's Finished and the requests behind
    it, or several records, arrive in one read and sit in OpenSSL's buffer
    with no readiness event of their own; a request split over records
    that arrive apart must still be waited for.  Every request is answered,
    in order, without a stall."""
    up = raw_upstream()
    cert, key, path = make_cert(tmp_path, "ra.test")
    put_cert(dp, "ra.test", cert, key)
    route(dp, "ra", "ra.test", up.port, enable_ssl=True)

    def req(i):
        return f"GET /r{i} HTTP/1.1\r\nHost: ra.test\r\n\r\n".encode()

    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        ctx = ssl.create_default_context(cafile=path)
        ctx.minimum_version = ctx.maximum_version = version
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname="ra.test")
        s = socket.create_connection(("127.0.0.1", dp.https_port), timeout=10)

        def answers(last):
            got = b""
            while not got.endswith(f"GET /r{last} 0".encode()):
                try:
                    got += obj.read(65536)
                    continue
                except ssl.SSLWantReadError:
                    pass
                d = s.recv(65536)
                assert d, got
                inc.write(d)
            return got

        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                s.sendall(out.read())
                d = s.recv(65536)
                assert d
                inc.write(d)
        # TLS 1.3: the client's Finished has not left yet and goes in the
        # same write as three requests in three records.
        for i in range(3):
            obj.write(req(i))
        s.sendall(out.read())
        got = answers(2)
        assert [got.find(f"GET /r{i} 0".encode()) for i in range(3)] == sorted(
            got.find(f"GET /r{i} 0".encode()) for i in range(3))
        assert got.count(b"HTTP/1.1 200 OK") == 3
        # Two requests in one record.
        obj.write(req(3) + req(4))
        s.sendall(out.read())
        assert answers(4).count(b"HTTP/1.1 200 OK") == 2
        # A head in two records that arrive apart.
        obj.write(req(5)[:10])
        s.sendall(out.read())
        time.sleep(0.2)
        obj.write(req(5)[10:])
        s.sendall(out.read())
        assert answers(5).count(b"HTTP/1.1 200 OK") == 1
        s.close()
