"""WebSockets through the builtin data plane: an echo over a real
WebSocket client and server (python3-websockets), an upgrade the upstream
refuses (which must stay HTTP, never a tunnel), and routes that do not
pass Upgrade."""

import asyncio
import threading

import pytest
import websockets

from dp_util import Conn, raw_upstream, reply, request_bytes, route  # noqa: F401 (fixture)

UPGRADE = ("GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


class EchoServer:
    """A websockets echo server on its own event loop thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.paths = []
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        assert self.ready.wait(10)

    async def _echo(self, ws, path=None):
        self.paths.append(ws.path if hasattr(ws, "path") else path)
        async for msg in ws:
            await ws.send(msg)

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def main():
            self.server = await websockets.serve(self._echo, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            self.ready.set()
            await self.server.wait_closed()

        self.loop.run_until_complete(main())

    def close(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.t.join(timeout=10)


@pytest.fixture
def dp(portico):
    return portico()


def test_websocket_echo(dp):
    srv = EchoServer()
    try:
        route(dp, "ws", "ws.test", srv.port, websocket=True)

        async def client():
            # The URI names the route's host; the socket goes to portico.
            async with websockets.connect(f"ws://ws.test:{dp.http_port}/chat?room=1", host="127.0.0.1",
                                          port=dp.http_port) as ws:
                out = []
                for msg in ("hello", "x" * 100000, b"\x00\x01binary"):
                    await ws.send(msg)
                    out.append(await asyncio.wait_for(ws.recv(), 10))
                return out

        got = asyncio.run(asyncio.wait_for(client(), 30))
        assert got == ["hello", "x" * 100000, b"\x00\x01binary"]
        assert "/chat?room=1" in srv.paths
    finally:
        srv.close()


def test_refused_upgrade_never_becomes_a_tunnel(dp, raw_upstream):
    # The upstream answers the upgrade with 426 (or 200): no 101, so the
    # bytes the client sends next are HTTP again, not tunnelled.
    def handler(peer, up):
        while (req := peer.read_head()) is not None:
            peer.read_body(req)
            up.record(req)
            if req["target"] == "/ws":
                peer.send(reply(426, b"no", {"Upgrade": "websocket", "Connection": "Upgrade"},
                                reason="Upgrade Required"))
            elif req["target"] == "/ws200":
                peer.send(reply(200, b"plain"))
            else:
                peer.send(reply(200, b"other"))

    up = raw_upstream(handler)
    route(dp, "nows", "nows.test", up.port, websocket=True)
    up.reset()
    for target, status in (("/ws", 426), ("/ws200", 200)):
        c = Conn(dp.http_port)
        # A WebSocket frame right behind the request, as an eager client
        # (or an attacker) would send it.
        frame = b"\x81\x85\x00\x00\x00\x00GET /SMUGGLED HTTP/1.1\r\nHost: nows.test\r\n\r\n"
        c.send(UPGRADE.format(host="nows.test").replace("/ws ", f"{target} ").encode() + frame)
        r = c.read_response()
        assert r.status == status
        assert r.header("upgrade") is None and (r.header("connection") or "").lower() != "upgrade"
        # The frame bytes are parsed as HTTP: refused, connection closed.
        r2 = c.read_response()
        assert r2.status == 400
        assert c.closed_by_peer()
        c.close()
    assert b"SMUGGLED" not in up.received() and b"\x81\x85" not in up.received()
    assert [r["target"] for r in up.requests] == ["/ws", "/ws200"]


def test_route_without_websocket_does_not_pass_upgrade(dp, raw_upstream):
    up = raw_upstream()
    route(dp, "plain", "plain.test", up.port, websocket=False)
    c = Conn(dp.http_port)
    c.send(UPGRADE.format(host="plain.test").encode())
    r = c.read_response()
    assert r.status == 200 and r.body == b"GET /ws 0"
    h = dict(up.requests[-1]["headers"])
    assert "upgrade" not in h and "connection" not in h
    c.close()


def test_unasked_101_is_502(dp, raw_upstream):
    def handler(peer, up):
        req = peer.read_head()
        if req is not None:
            peer.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")

    up = raw_upstream(handler)
    route(dp, "sw", "sw.test", up.port, websocket=True)
    c = Conn(dp.http_port)
    c.send(request_bytes("sw.test", "/"))
    assert c.read_response().status == 502
    c.close()
