"""Hot updates and stopping: while wrk loads one route and a TLS client
keeps opening connections to another, 100 route changes and 10
certificate replacements are applied through the API; not one request or
connection may fail.  Then SIGTERM: a request in flight is finished,
idle connections are closed."""

import re
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import wait_until
from dp_util import Conn, RawUpstream, echo_handler, make_cert, put_cert, reply, request_bytes, route


def wrk_errors(out):
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    sock = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non2xx = int(m.group(1)) if m else 0
    m = re.search(r"(\d+) requests in", out)
    return sock, non2xx, int(m.group(1)) if m else 0


def test_changes_under_load_drop_nothing(portico, tmp_path):
    p = portico(settings={"workers": "2"})
    ups = [RawUpstream(echo_handler), RawUpstream(echo_handler)]
    try:
        route(p, "load", "load.test", ups[0].port)
        certs = [make_cert(tmp_path, "tls.test", tag=f"-{i}") for i in range(11)]
        bundle = tmp_path / "bundle.pem"
        bundle.write_text("".join(c[0] for c in certs))
        put_cert(p, "tls.test", certs[0][0], certs[0][1])
        route(p, "tls", "tls.test", ups[1].port, enable_ssl=True)

        tls_stats = {"ok": 0, "fail": []}
        stop = threading.Event()

        def tls_client():
            ctx = ssl.create_default_context(cafile=str(bundle))
            while not stop.is_set():
                try:
                    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", p.https_port), timeout=10),
                                        server_hostname="tls.test")
                    c = Conn(0, sock=s)
                    for i in range(3):  # keep-alive across the changes too
                        c.send(request_bytes("tls.test", f"/t{i}"))
                        r = c.read_response()
                        if r.status != 200:
                            tls_stats["fail"].append(r.status)
                        else:
                            tls_stats["ok"] += 1
                    c.close()
                except (OSError, EOFError, ssl.SSLError) as e:
                    tls_stats["fail"].append(repr(e))

        wrk = subprocess.Popen(["wrk", "-t2", "-c8", "-d12s", "--timeout", "5s", "-H", "Host: load.test",
                                f"http://127.0.0.1:{p.http_port}/"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        t = threading.Thread(target=tls_client, daemon=True)
        t.start()
        try:
            time.sleep(0.5)
            changes = 0
            for i in range(100):
                if i % 2 == 0:
                    route(p, "load", "load.test", ups[(i // 2) % 2].port)  # move the loaded route
                else:
                    route(p, f"filler{i}", f"f{i}.test", ups[0].port, path_prefix=f"/p{i}")
                changes += 1
                if i % 10 == 9:
                    c, k, _ = certs[1 + i // 10]
                    put_cert(p, "tls.test", c, k)
            assert changes == 100
        finally:
            out, _ = wrk.communicate(timeout=60)
            stop.set()
            t.join(timeout=30)
        sock_errors, non2xx, total = wrk_errors(out)
        assert total > 0, out
        assert sock_errors == 0 and non2xx == 0, out
        assert tls_stats["fail"] == [] and tls_stats["ok"] > 0, tls_stats
        # Both upstreams served the moving route.
        assert any(r["target"] == "/" for r in ups[0].requests) and any(r["target"] == "/" for r in ups[1].requests)
    finally:
        for u in ups:
            u.close()


def test_sigterm_finishes_requests_in_flight(portico):
    p = portico(settings={"drain_timeout_ms": "10000"})

    def slow(peer, up):
        while (req := peer.read_head()) is not None:
            if req["target"] == "/slow":
                time.sleep(1.5)
            peer.send(reply(200, b"finished"))

    up = RawUpstream(slow)
    try:
        route(p, "slow", "slow.test", up.port)
        idle = Conn(p.http_port)
        idle.send(request_bytes("slow.test", "/warm"))
        assert idle.read_response().status == 200
        busy = Conn(p.http_port)
        busy.send(request_bytes("slow.test", "/slow"))
        time.sleep(0.3)
        p.proc.send_signal(15)
        # The idle keep-alive connection is closed at once...
        assert idle.closed_by_peer(timeout=5)
        # ...the request in flight completes, with Connection: close.
        r = busy.read_response()
        assert r.status == 200 and r.body == b"finished"
        assert r.header("connection") == "close"
        wait_until(lambda: p.proc.poll() is not None, timeout=15, what="portico to exit")
        assert p.proc.returncode == 0
        # New connections are refused once the listeners are closed.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", p.http_port), timeout=2)
    finally:
        up.close()


def test_changes_after_housekeeping(portico):
    """Housekeeping (2 to 4 s after the last change) gives back the memory the
    engine keeps between changes; the changes after it build as before:
    a changed route moves, a new one serves, a deleted one is gone, and an
    untouched one still reaches its upstream."""
    p = portico()
    ups = [RawUpstream(echo_handler) for _ in range(2)]

    def answer(host):
        c = Conn(p.http_port)
        try:
            c.send(request_bytes(host))
            r = c.read_response()
            return r.status, r.header("x-upstream-port")
        finally:
            c.close()

    try:
        for name in ("keep", "move", "drop"):
            route(p, name, f"{name}.test", ups[0].port)
        for name in ("keep", "move", "drop"):
            assert answer(f"{name}.test") == (200, str(ups[0].port))
        time.sleep(6)
        route(p, "move", "move.test", ups[1].port)
        route(p, "new", "new.test", ups[1].port)
        assert p.api("DELETE", "/proxies/drop").status == 200
        assert answer("keep.test") == (200, str(ups[0].port))
        assert answer("move.test") == (200, str(ups[1].port))
        assert answer("new.test") == (200, str(ups[1].port))
        assert answer("drop.test")[0] == 404
    finally:
        for u in ups:
            u.close()
