"""Slow and abusive clients (research/reliability.md §2 row 22):
slowhttptest's slow headers, slow body and slow read attacks, each bounded
in time, are cut off by the header timeout, the minimum body rate and the
send timeout, while a normal client is still served."""

import json
import os
import resource
import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import wait_until
from dp_util import Conn, RawUpstream, echo_handler, raw, request_bytes, route


@pytest.fixture
def env(portico):
    p = portico(settings={"header_timeout_ms": "2000", "idle_timeout_ms": "3000", "body_min_rate": "1000",
                          "max_body_size": "10m", "workers": "2"})
    up = RawUpstream(echo_handler)
    route(p, "slow", "slow.test", up.port)
    yield p, up
    up.close()


class Prober:
    """A normal client that keeps asking while an attack runs."""

    def __init__(self, port):
        self.port = port
        self.ok = 0
        self.fail = []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                r = raw(self.port, request_bytes("slow.test", "/probe"), timeout=5)
                if r.status == 200:
                    self.ok += 1
                else:
                    self.fail.append(r.status)
            except (OSError, EOFError) as e:
                self.fail.append(repr(e))
            time.sleep(0.2)

    def finish(self):
        self.stop.set()
        self.t.join(timeout=10)


def slowhttptest(port, *args, seconds):
    """Runs slowhttptest through portico (as an HTTP proxy, so that the
    requests name the route's host in absolute form); returns the last
    status block's counters, the exit status and the output."""
    out = subprocess.run(["slowhttptest", *args, "-l", str(seconds), "-u", "http://slow.test/",
                          "-d", f"127.0.0.1:{port}", "-p", "3"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    counts = {}
    for key in ("connected", "closed", "error", "pending"):
        found = re.findall(rf"{key}:\s+(\d+)", plain)
        counts[key] = int(found[-1]) if found else 0
    counts["available"] = re.findall(r"service available:\s+(\w+)", plain)
    m = re.search(r"Exit status:\s*(.*)", plain)
    counts["exit"] = m.group(1).strip() if m else ""
    m = re.search(r"Test ended on (\d+)", plain)
    counts["ended"] = int(m.group(1)) if m else seconds
    return counts, plain


def test_slow_headers_are_cut_off(env):
    p, up = env
    probe = Prober(p.http_port)
    try:
        counts, out = slowhttptest(p.http_port, "-H", "-c", "100", "-r", "50", "-i", "1", seconds=6)
    finally:
        probe.finish()
    # Every slowloris connection was closed by the 2 s header timeout
    # before the attack's own time limit.
    assert counts["exit"] == "No open connections left", out[-1500:]
    assert counts["ended"] < 6 and "NO" not in counts["available"]
    assert probe.ok > 5 and probe.fail == [], probe.fail


def test_slow_body_is_cut_off(env):
    p, up = env
    probe = Prober(p.http_port)
    t0 = time.monotonic()
    try:
        # 20 bytes a second against a minimum of 1000 bytes a second.
        counts, out = slowhttptest(p.http_port, "-B", "-c", "30", "-r", "30", "-i", "1", "-x", "10",
                                   "-s", "100000", seconds=14)
    finally:
        probe.finish()
    assert time.monotonic() - t0 < 75
    assert counts["exit"] == "No open connections left", out[-1500:]
    assert counts["ended"] < 14 and "NO" not in counts["available"]
    assert probe.ok > 5 and probe.fail == [], probe.fail


def test_slow_reader_is_cut_off(portico, tmp_path):
    log = tmp_path / "access.log"
    p = portico(settings={"idle_timeout_ms": "2000", "access_log": str(log)})

    def big(peer, u):
        while (req := peer.read_head()) is not None:
            body = b"z" * (8 << 20)
            peer.send(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)

    src = RawUpstream(big)
    try:
        route(p, "big", "big.test", src.port)
        c = Conn(p.http_port)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.send(request_bytes("big.test", "/", headers={"X-Request-ID": "slow-reader"}))
        assert c.sock.recv(100)
        # The client stops reading.  After idle_timeout_ms without progress
        # portico gives the connection up (and logs the exchange) instead
        # of holding it and the upstream's data forever.
        t0 = time.monotonic()

        def logged():
            return [json.loads(x) for x in log.read_text().splitlines() if "slow-reader" in x]

        recs = wait_until(lambda: log.exists() and logged(), timeout=20, what="the slow reader's log line")
        assert time.monotonic() - t0 < 15
        assert recs[0]["status"] == 200 and recs[0]["bytes"] < (8 << 20)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
        assert raw(p.http_port, request_bytes("big.test", "/after")).status == 200
    finally:
        src.close()


def test_out_of_descriptors_backs_off(portico):
    """With its descriptor limit lowered under a flood of connections,
    portico pauses accepting instead of spinning on EMFILE, keeps serving
    the connections it has, and accepts again once descriptors are free."""
    p = portico(settings={"workers": "1", "header_timeout_ms": "60000"})
    up = RawUpstream(echo_handler)
    flood = []
    try:
        route(p, "fd", "fd.test", up.port)
        keep = Conn(p.http_port)
        keep.send(request_bytes("fd.test", "/first"))
        assert keep.read_response().status == 200
        pid = p.proc.pid
        used = len(os.listdir(f"/proc/{pid}/fd"))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        # Only the soft limit moves: raising it back needs no privilege.
        subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={used + 16}:"], check=True, timeout=10)
        for _ in range(60):
            s = socket.create_connection(("127.0.0.1", p.http_port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\n")  # a head that never ends
            flood.append(s)
        wait_until(lambda: "pausing accept" in p.read_log(), timeout=20, what="the EMFILE warning")
        # Not spinning: the process uses a small part of a core meanwhile.
        ticks = lambda: sum(int(x) for x in open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[11:13])
        t0, c0 = time.monotonic(), ticks()
        time.sleep(2)
        used_pct = 100 * (ticks() - c0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0)
        assert used_pct < 50, f"portico used {used_pct:.0f}% of a core while out of descriptors"
        # The established connection is still served.
        keep.send(request_bytes("fd.test", "/still"))
        assert keep.read_response().status == 200
        keep.close()
        for s in flood:
            s.close()
        flood.clear()
        subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={soft}:"], check=True, timeout=10)
        wait_until(lambda: raw(p.http_port, request_bytes("fd.test", "/again"), timeout=5).status == 200,
                   timeout=20, what="portico to accept again")
    finally:
        for s in flood:
            s.close()
        up.close()
