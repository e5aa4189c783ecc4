"""Helpers of the builtin data plane's integration tests (test_builtin_*.py):
raw-socket clients that read HTTP/1.1 responses byte-exactly, scripted
upstreams that log every byte they receive, certificates made with the
openssl command, and memory readings of the portico process.

Everything listens on 127.0.0.1 on ports the kernel picks; every read has
a deadline; threads started here are daemons stopped by close()."""

import os
import socket
import subprocess
import threading
import time

import pytest

from conftest import http_request, proxy_body


# ---------------------------------------------------------------- clients

class RawResponse:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (lower-case name, value)
        self.body = body
        self.raw_head = raw_head

    def header(self, name):
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def all(self, name):
        return [v for k, v in self.headers if k == name]

    def __repr__(self):
        return f"<RawResponse {self.status} {self.headers} {self.body[:200]!r}>"


class Conn:
    """A client connection that sends raw bytes and parses responses."""

    def __init__(self, port, timeout=10.0, sock=None):
        self.sock = sock or socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        try:
            d = self.sock.recv(65536)
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
        self.buf += d
        return bool(d)

    def _read_line(self):
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError("connection closed inside a head")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed with {n - len(self.buf)} body bytes missing")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, method="GET", allow_truncated=False):
        """One response; for close-delimited bodies reads to EOF.  With
        allow_truncated a body cut short is returned as far as it got, and
        .truncated tells."""
        head = []
        while True:
            line = self._read_line()
            if line == b"" and head:
                break
            head.append(line)
        status_line = head[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        for h in head[1:]:
            k, v = h.decode("latin-1").split(":", 1)
            headers.append((k.strip().lower(), v.strip()))
        r = RawResponse(status, reason, headers, b"", b"\r\n".join(head))
        r.truncated = False
        if 100 <= status < 200 or status in (204, 304) or method == "HEAD":
            return r
        te = r.header("transfer-encoding")
        cl = r.header("content-length")
        try:
            if te is not None:
                assert te.lower() == "chunked", te
                while True:
                    size = int(self._read_line().split(b";")[0], 16)
                    if size == 0:
                        while self._read_line() != b"":
                            pass
                        break
                    r.body += self._read_exact(size)
                    assert self._read_exact(2) == b"\r\n"
            elif cl is not None:
                r.body = self._read_exact(int(cl))
            else:
                while self._fill():
                    pass
                r.body, self.buf = self.buf, b""
        except EOFError:
            if not allow_truncated:
                raise
            r.truncated = True
            if te is None:
                r.body, self.buf = self.buf, b""
        return r

    def closed_by_peer(self, timeout=5.0):
        """True when the peer closes the connection (EOF or reset) within
        timeout, with no further bytes."""
        self.sock.settimeout(timeout)
        try:
            extra = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        return extra == b"" and self.buf == b""

    def close(self):
        self.sock.close()


def request_bytes(host, path="/", method="GET", headers=None, body=b""):
    h = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    for k, v in (headers or {}).items():
        h.append(f"{k}: {v}")
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k in (headers or {})):
        h.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(h) + "\r\n\r\n").encode() + body


def raw(port, data, method="GET", timeout=10.0, check_close=False):
    """Sends data on a fresh connection and reads one response; with
    check_close, r.closed tells whether portico then closed the connection
    (waiting up to 3 s for it)."""
    c = Conn(port, timeout=timeout)
    try:
        c.send(data)
        r = c.read_response(method=method)
        if check_close:
            r.closed = c.closed_by_peer(timeout=3.0)
        return r
    finally:
        c.close()


# --------------------------------------------------------------- upstreams

class Peer:
    """One accepted upstream connection as a scripted handler sees it;
    every byte received is appended to the upstream's log, with the
    connection's number."""

    def __init__(self, sock, log, cid=0):
        self.sock = sock
        self.log = log
        self.cid = cid
        self.buf = b""
        self.upstream = None

    def recv_some(self):
        try:
            d = self.sock.recv(65536)
        except (ConnectionResetError, socket.timeout, OSError):
            d = b""
        if d:
            # The checker's connections are marked before their bytes are
            # logged, so that received() never shows them, even briefly.
            if b"\r\nUser-Agent: portico-health" in d and self.upstream is not None:
                self.upstream.health_conns.add(self.cid)
            self.log.append((self.cid, d))
        return d

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            d = self.recv_some()
            if not d:
                return None
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
        headers = []
        for ln in lines[1:]:
            k, v = ln.split(":", 1)
            headers.append((k.strip().lower(), v.strip()))
        hd = dict(headers)
        return {"method": method, "target": target, "version": version, "headers": headers,
                "raw": head, "conn": self.cid, "verify": hd.get("user-agent") == "portico-verify",
                "health_check": hd.get("user-agent", "").startswith("portico-health")}

    def read_body(self, req, sink=None):
        """Reads the request body (Content-Length or chunked); returns its
        length, feeding the bytes to sink when given, else keeping them in
        req["body"]."""
        hd = dict(req["headers"])
        keep = [] if sink is None else None
        total = 0

        def take(n):
            nonlocal total
            while n > 0:
                if not self.buf:
                    d = self.recv_some()
                    if not d:
                        raise EOFError("body cut short")
                    self.buf = d
                part, self.buf = self.buf[:n], self.buf[n:]
                n -= len(part)
                total += len(part)
                (sink or keep.append)(part)

        def line():
            while b"\r\n" not in self.buf:
                d = self.recv_some()
                if not d:
                    raise EOFError("chunk line cut short")
                self.buf += d
            ln, self.buf = self.buf.split(b"\r\n", 1)
            return ln

        if hd.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(line().split(b";")[0], 16)
                if size == 0:
                    while line() != b"":
                        pass
                    break
                take(size)
                assert line() == b""
        else:
            take(int(hd.get("content-length", "0")))
        if keep is not None:
            req["body"] = b"".join(keep)
        return total

    def send(self, data):
        self.sock.sendall(data)

    def reset(self):
        """Closes with a TCP reset."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()


def reply(status=200, body=b"ok", headers=None, reason="OK"):
    h = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
    for k, v in (headers or {}).items():
        h.append(f"{k}: {v}")
    return ("\r\n".join(h) + "\r\n\r\n").encode() + body


class RawUpstream:
    """A scripted upstream: handler(peer, upstream) runs in its own thread
    for each connection.  self.log holds every byte received, and
    self.requests every head read through Peer.read_head, leaving out
    portico's own health-check connections."""

    def __init__(self, handler, accept=True):
        self.handler = handler
        self.log = []
        self.requests = []
        self.health_conns = set()
        self.connections = 0
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.closing = False
        self.threads = []
        if accept:
            t = threading.Thread(target=self._accept_loop, daemon=True)
            t.start()
            self.threads.append(t)

    def _accept_loop(self):
        self.sock.settimeout(0.1)
        while not self.closing:
            try:
                s, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(30)
            with self.lock:
                self.connections += 1
                cid = self.connections
            t = threading.Thread(target=self._serve, args=(s, cid), daemon=True)
            t.start()

    def _serve(self, s, cid):
        p = Peer(s, self.log, cid)
        p.upstream = self
        try:
            self.handler(p, self)
        except (OSError, EOFError, AssertionError, ValueError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def received(self):
        with self.lock:
            return b"".join(d for cid, d in self.log if cid not in self.health_conns)

    def record(self, req):
        """Keeps req unless portico sent it on its own: the API's verify
        request (which an apply sends through the data plane) or an active
        health check (each upstream gets its first one at a random moment
        of the first interval, which may fall inside a test)."""
        if not req["verify"] and not req["health_check"]:
            with self.lock:
                self.requests.append(req)

    def reset(self):
        """Forgets what was received so far (the API's verify requests)."""
        with self.lock:
            del self.log[:]
            del self.requests[:]

    def close(self):
        self.closing = True
        self.sock.close()


def echo_handler(peer, up):
    """Answers every request with 200 and a body naming what it got, keeping
    the connection alive like a well-behaved HTTP/1.1 server."""
    while True:
        req = peer.read_head()
        if req is None:
            return
        peer.read_body(req)
        up.record(req)
        body = (f"{req['method']} {req['target']} {len(req['body'])}").encode()
        out = reply(200, body, {"X-Upstream-Port": str(up.port)})
        peer.send(out[:len(out) - len(body)] if req["method"] == "HEAD" else out)


@pytest.fixture
def raw_upstream():
    made = []

    def make(handler=echo_handler, accept=True):
        u = RawUpstream(handler, accept=accept)
        made.append(u)
        return u

    yield make
    for u in made:
        u.close()


# ------------------------------------------------------------------ portico

def route(p, name, domain, port, **extra):
    """PUTs a proxy to an upstream on 127.0.0.1:port without health gating
    and checks that the API took it."""
    body = proxy_body(domain, port, require_healthy=False, **extra)
    r = p.put_proxy(name, body)
    assert r.status in (200, 201), r
    return r


def rss_kb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Samples a process's resident memory every 50 ms in a thread."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = 0
        self.stop_flag = False
        self.t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_flag:
            try:
                self.peak = max(self.peak, rss_kb(self.pid))
            except OSError:
                return
            time.sleep(0.05)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag = True
        self.t.join(timeout=5)


def make_cert(dirpath, domain, tag=""):
    """A self-signed ECDSA certificate for domain (and *.domain); returns
    (cert_pem, key_pem, cert_path)."""
    base = os.path.join(str(dirpath), f"{domain}{tag}")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", base + ".key", "-out", base + ".crt", "-days", "2",
                    "-subj", f"/CN={domain}", "-addext", f"subjectAltName=DNS:{domain}"],
                   check=True, capture_output=True, timeout=30)
    with open(base + ".crt") as f:
        cert = f.read()
    with open(base + ".key") as f:
        key = f.read()
    return cert, key, base + ".crt"


def put_cert(p, domain, cert, key):
    r = p.api("PUT", f"/certificates/{domain}", body={"certificate": cert, "key": key})
    assert r.status in (200, 201), r
    return r


__all__ = ["Conn", "RawUpstream", "Peer", "reply", "echo_handler", "raw", "request_bytes", "route", "rss_kb",
           "RssSampler", "make_cert", "put_cert", "http_request"]
