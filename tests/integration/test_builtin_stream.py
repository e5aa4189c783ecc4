"""Bodies streamed, never buffered whole: a 1 GiB upload and a 1 GiB
download through the builtin data plane while portico's resident memory
is sampled.  Bound: the peak during a transfer stays within 16 MiB of the
resident memory before it.  The data plane holds at most 16 KiB per
direction per connection, and nothing is allocated per chunk, so the
measured growth is nil (under ASan: < 0.1 MiB for 2 GiB each way); the
margin is for ASan's allocator and the threads' stacks."""

import socket
import threading
import zlib

import pytest

from dp_util import RawUpstream, RssSampler, reply, route, rss_kb

GIB = 1 << 30
CHUNK = 1 << 20
BOUND_KB = 16 * 1024


def pattern():
    return bytes(range(256)) * (CHUNK // 256)


@pytest.fixture
def dp(portico):
    return portico(settings={"max_body_size": "2g", "workers": "2"})


def sink_handler(peer, up):
    """Reads a body of any framing, answers its length and CRC-32."""
    while (req := peer.read_head()) is not None:
        crc = 0

        def feed(b):
            nonlocal crc
            crc = zlib.crc32(b, crc)

        n = peer.read_body(req, sink=feed)
        peer.send(reply(200, f"{n} {crc}".encode()))


def source_handler(peer, up):
    """Answers GET /big with 1 GiB (Content-Length), /big-chunked with 1 GiB
    chunked."""
    data = pattern()
    while (req := peer.read_head()) is not None:
        if req["target"] == "/big":
            peer.send(f"HTTP/1.1 200 OK\r\nContent-Length: {GIB}\r\n\r\n".encode())
            for _ in range(GIB // CHUNK):
                peer.send(data)
        elif req["target"] == "/big-chunked":
            peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            head = f"{CHUNK:x}\r\n".encode()
            for _ in range(GIB // CHUNK):
                peer.send(head + data + b"\r\n")
            peer.send(b"0\r\n\r\n")
        else:
            peer.send(reply(200, b"ok"))


def upload(port, host, chunked):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    data = pattern()
    crc = 0
    if chunked:
        s.sendall(f"POST /up HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        head = f"{CHUNK:x}\r\n".encode()
        for _ in range(GIB // CHUNK):
            s.sendall(head + data + b"\r\n")
            crc = zlib.crc32(data, crc)
        s.sendall(b"0\r\n\r\n")
    else:
        s.sendall(f"POST /up HTTP/1.1\r\nHost: {host}\r\nContent-Length: {GIB}\r\n\r\n".encode())
        for _ in range(GIB // CHUNK):
            s.sendall(data)
            crc = zlib.crc32(data, crc)
    resp = b""
    while b"\r\n\r\n" not in resp or not resp.endswith(str(crc).encode()):
        d = s.recv(4096)
        if not d:
            break
        resp += d
    s.close()
    return resp, crc


def download(port, host, target):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, body = buf.split(b"\r\n\r\n", 1)
    chunked = b"chunked" in head.lower()
    total, crc, pending = 0, 0, body
    # For a chunked body, count the raw bytes and check the last chunk;
    # the decoded size is the sum of the chunk sizes we parse on the fly.
    state = {"need": 0, "line": b""}

    def decode(b):
        nonlocal total, crc
        i = 0
        while i < len(b):
            if state["need"] > 0:
                take = b[i:i + state["need"]]
                total += len(take)
                crc = zlib.crc32(take, crc)
                state["need"] -= len(take)
                i += len(take)
                if state["need"] == 0:
                    state["need"] = -2  # the CRLF after the data
                continue
            if state["need"] < 0:
                skip = min(-state["need"], len(b) - i)
                state["need"] += skip
                i += skip
                continue
            if state["line"].endswith(b"\r") and b[i:i + 1] == b"\n":
                # The read ended between the CR and the LF of the size line.
                line = state["line"][:-1]
                state["line"] = b""
                i += 1
            else:
                j = b.find(b"\r\n", i)
                if j < 0:
                    state["line"] += b[i:]
                    return False
                line = state["line"] + b[i:j]
                state["line"] = b""
                i = j + 2
            size = int(line.split(b";")[0], 16)
            if size == 0:
                return True
            state["need"] = size
        return False

    done = False
    while True:
        if chunked:
            done = decode(pending)
        else:
            total += len(pending)
            crc = zlib.crc32(pending, crc)
            done = total >= GIB
        if done:
            break
        pending = s.recv(1 << 20)
        if not pending:
            break
    s.close()
    return head, total, crc


def expected_crc():
    data = pattern()
    crc = 0
    for _ in range(GIB // CHUNK):
        crc = zlib.crc32(data, crc)
    return crc


def test_one_gib_upload_streamed(dp):
    up = RawUpstream(sink_handler)
    try:
        route(dp, "sink", "sink.test", up.port)
        base = dp.proc.pid
        rss0 = rss_kb(base)
        for chunked in (False, True):
            with RssSampler(base) as s:
                resp, crc = upload(dp.http_port, "sink.test", chunked)
            assert resp.startswith(b"HTTP/1.1 200"), resp[:200]
            assert resp.endswith(f"{GIB} {crc}".encode()), resp[-100:]
            assert s.peak - rss0 < BOUND_KB, f"RSS grew by {(s.peak - rss0) // 1024} MiB"
    finally:
        up.close()


def test_one_gib_download_streamed(dp):
    up = RawUpstream(source_handler)
    try:
        route(dp, "src", "src.test", up.port)
        rss0 = rss_kb(dp.proc.pid)
        want = expected_crc()
        for target in ("/big", "/big-chunked"):
            with RssSampler(dp.proc.pid) as s:
                head, total, crc = download(dp.http_port, "src.test", target)
            assert head.startswith(b"HTTP/1.1 200"), head
            assert total == GIB and crc == want, target
            assert s.peak - rss0 < BOUND_KB, f"RSS grew by {(s.peak - rss0) // 1024} MiB"
    finally:
        up.close()


def test_slow_reader_does_not_grow_memory(dp):
    """A client that reads a large response slowly: portico stops reading
    from the upstream instead of buffering (backpressure)."""
    up = RawUpstream(source_handler)
    try:
        route(dp, "src2", "src2.test", up.port)
        rss0 = rss_kb(dp.proc.pid)
        s = socket.create_connection(("127.0.0.1", dp.http_port), timeout=30)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /big HTTP/1.1\r\nHost: src2.test\r\n\r\n")
        got = 0
        with RssSampler(dp.proc.pid) as sampler:
            for _ in range(200):
                got += len(s.recv(65536))
                threading.Event().wait(0.005)
        s.close()
        assert got > 0
        assert sampler.peak - rss0 < BOUND_KB
    finally:
        up.close()
