"""The nginx engine end to end: `portico serve` with a managed nginx on a
loopback port, driven through the admin API, with Python upstreams behind
it.  Seed 000's usage example, several domains, path prefixes with and
without stripping, WebSockets, unknown hosts, the health endpoint."""

import asyncio
import os
import socket
import ssl
import stat
import subprocess
import threading

import pytest
import websockets

from conftest import proxy_body


def test_seed_000_usage_example(portico, upstream):
    p = portico(engine="nginx")
    up = upstream("orchestrator")
    body = {"domain": "orchestrator.fullpotential.ai", "upstream_host": "localhost", "upstream_port": up.port,
            "require_healthy": True, "enable_ssl": False}
    r = p.put_proxy("orchestrator", body)
    assert r.status == 201, r
    assert r.json["apply"]["engine"] == "nginx"
    assert r.json["apply"]["reloaded"] is True
    assert r.json["apply"]["verify"]["ok"] is True, r.json["apply"]
    # curl -H 'Host: orchestrator.fullpotential.ai' http://127.0.0.1:<nginx port>/
    r = p.get("orchestrator.fullpotential.ai", "/orchestrator/health")
    assert r.status == 200, r
    assert r.headers["x-upstream"] == "orchestrator"
    assert r.headers["x-content-type-options"] == "nosniff"

    up2 = upstream("orchestrator-v2")
    body["upstream_port"] = up2.port
    r = p.put_proxy("orchestrator", body)
    assert r.status == 200, r
    assert p.get("orchestrator.fullpotential.ai").headers["x-upstream"] == "orchestrator-v2"

    r = p.api("GET", "/proxies/missing")
    assert r.status == 404 and r.error_code == "PROXY_NOT_FOUND"

    r = p.api("DELETE", "/proxies/orchestrator")
    assert r.status == 200, r
    r = p.get("orchestrator.fullpotential.ai")
    assert r.status == 404 and r.error_code == "ROUTE_NOT_FOUND"


def test_two_domains_and_forwarded_headers(portico, upstream):
    p = portico(engine="nginx")
    a, b = upstream("a"), upstream("b")
    assert p.put_proxy("a", proxy_body("a.example.test", a.port)).status == 201
    assert p.put_proxy("b", proxy_body("b.example.test", b.port)).status == 201
    r = p.get("a.example.test", "/x?q=1", headers={"X-Forwarded-For": "6.6.6.6"})
    assert r.status == 200 and r.json["upstream"] == "a" and r.json["path"] == "/x?q=1"
    seen = r.json["headers"]
    # Overwritten at the edge (no trusted proxies), not appended to.
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-real-ip"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == "a.example.test"
    assert seen["x-forwarded-port"] == str(p.http_port)
    assert seen["host"] == "a.example.test"
    # A plain request never carries Connection: upgrade to the upstream.
    assert seen.get("connection", "").lower() != "upgrade"
    assert p.get("B.Example.Test").json["upstream"] == "b"


def test_path_prefixes_with_and_without_stripping(portico, upstream):
    p = portico(engine="nginx")
    api, static = upstream("api"), upstream("static")
    r = p.put_proxy("api", proxy_body("app.example.test", api.port, path_prefix="/api", strip_prefix=True))
    assert r.status == 201, r
    r = p.put_proxy("static", proxy_body("app.example.test", static.port, path_prefix="/static/"))
    assert r.status == 201, r
    cases = [
        ("/api/users?id=7", "api", "/users?id=7"),
        ("/api", "api", "/"),
        ("/api/", "api", "/"),
        ("/static/app.js", "static", "/static/app.js"),
        ("/static", "static", "/static"),
    ]
    for path, name, seen in cases:
        r = p.get("app.example.test", path)
        assert r.status == 200, (path, r)
        assert (r.json["upstream"], r.json["path"]) == (name, seen), path
    # /apix is not under /api, and no route holds "/".
    for path in ("/apix", "/", "/staticx/y"):
        r = p.get("app.example.test", path)
        assert r.status == 404 and r.error_code == "ROUTE_NOT_FOUND", (path, r)
    # Both routes live in the domain's one file.
    sites = p.state_dir / "nginx" / "sites-available"
    assert sorted(f.name for f in sites.iterdir()) == ["portico-_default.conf", "portico-app.example.test.conf"]


class WebSocketEcho:
    """An asyncio WebSocket echo server on 127.0.0.1, in a thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "the WebSocket server did not start"

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def echo(ws, *args):
            async for message in ws:
                await ws.send(f"echo:{message}")

        self.server = self.loop.run_until_complete(websockets.serve(echo, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    def close(self):
        async def shutdown():
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def ws_roundtrip(port, host, message):
    async def go():
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        async with websockets.connect(f"ws://{host}/chat", sock=sock, open_timeout=10, close_timeout=5) as ws:
            await ws.send(message)
            return await asyncio.wait_for(ws.recv(), 10)

    return asyncio.run(go())


def test_websocket_upgrade_through_nginx(portico):
    p = portico(engine="nginx")
    server = WebSocketEcho()
    try:
        r = p.put_proxy("chat", proxy_body("chat.example.test", server.port, require_healthy=False))
        assert r.status == 201, r
        assert ws_roundtrip(p.http_port, "chat.example.test", "hello") == "echo:hello"
        # Several messages on one tunnel, and a second connection.
        assert ws_roundtrip(p.http_port, "chat.example.test", "again") == "echo:again"
    finally:
        server.close()


def test_unknown_host_and_health(portico, upstream):
    p = portico(engine="nginx")
    up = upstream()
    assert p.put_proxy("known", proxy_body("known.example.test", up.port)).status == 201
    for host in ("unknown.example.test", "127.0.0.1", "example.test"):
        r = p.get(host, "/anything")
        assert r.status == 404, (host, r)
        assert r.error_code == "ROUTE_NOT_FOUND"
        assert r.headers["content-type"] == "application/json"

    r = p.api("GET", "/proxy-manager/health")
    assert r.status == 200, r
    assert r.json["status"] == "healthy"
    ngx = r.json["nginx"]
    assert ngx["present"] is True and ngx["managed"] is True
    assert ngx["config_test_ok"] is True
    assert isinstance(ngx["master_pid"], int) and ngx["master_pid"] > 0
    assert ngx["version"]
    assert ngx["last_reload_timestamp"]


def https_get(port, sni, path):
    """GET over TLS with SNI; returns (status line, peer certificate DER)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data.decode("utf-8", "replace"), tls.getpeercert(binary_form=True)


def test_uploaded_certificate_serves_https_and_redirects(portico, upstream, tmp_path):
    p = portico(engine="nginx")
    up = upstream("secure")
    domain = "secure.example.test"
    key_file, cert_file = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key_file), "-out", str(cert_file), "-days", "2", "-subj", f"/CN={domain}",
                    "-addext", f"subjectAltName=DNS:{domain}"], check=True, capture_output=True, timeout=60)
    cert_pem, key_pem = cert_file.read_text(), key_file.read_text()
    r = p.api("PUT", f"/certificates/{domain}", body={"certificate": cert_pem, "key": key_pem})
    assert r.status in (200, 201), r

    r = p.put_proxy("secure", proxy_body(domain, up.port, enable_ssl=True))
    assert r.status == 201, r
    assert r.json["ssl_enabled"] is True
    assert r.json["apply"]["verify"]["ok"] is True, r.json["apply"]

    r = p.get(domain, "/login?next=/home")
    assert r.status == 301, r
    assert r.headers["location"] == f"https://{domain}:{p.https_port}/login?next=/home"

    head, der = https_get(p.https_port, domain, "/login")
    assert head.startswith("HTTP/1.1 200"), head
    assert '"upstream": "secure"' in head
    assert der == ssl.PEM_cert_to_DER_cert(cert_pem)
    # A name nginx has no certificate for gets no handshake at all.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(p.https_port, "other.example.test", "/")

    key_path = p.state_dir / "certs" / domain / "privkey.pem"
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    assert key_path.read_text() == key_pem
    key_body = key_pem.splitlines()[1]
    assert key_body not in p.read_log()
