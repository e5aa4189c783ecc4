"""Shared fixtures of the integration tests: a real `portico serve` on
loopback ports picked here, Python upstream servers, and small HTTP
helpers.  Every wait is bounded; every process started here is stopped by
its PID at teardown."""

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# Taken out of the environment: they are the harness's, not settings, and
# portico refuses unknown PORTICO_* variables in the processes started here.
SOURCE_DIR = os.environ.pop("PORTICO_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
BIN = os.environ.pop("PORTICO_BIN", os.path.join(SOURCE_DIR, "build", "portico"))
# ASan slows start-up and every call; waits are generous but bounded.
START_TIMEOUT = 30.0


_random = random.SystemRandom()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports free_port never picks: test_ports.py and test_store_postgres.py
# take blocks of consecutive ports here and expect the lowest to go first.
BLOCK_PORTS = range(22000, 24000)


def free_port(udp=False):
    """A port free on 127.0.0.1 right now (for TCP, and UDP too when asked).
    Chosen below the kernel's ephemeral range: a port from bind(0) is one
    that outgoing connections take too, so it can be gone again by the time
    a server binds it.  Never one of BLOCK_PORTS."""
    low = _ephemeral_low()
    for _ in range(500):
        port = _random.randrange(10000, low) if low > 11000 else 0
        if port in BLOCK_PORTS:
            continue
        kinds = [socket.SOCK_STREAM] + ([socket.SOCK_DGRAM] if udp else [])
        socks = []
        try:
            for kind in kinds:
                s = socket.socket(socket.AF_INET, kind)
                socks.append(s)
                s.bind(("127.0.0.1", port))
                port = s.getsockname()[1]
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free port on 127.0.0.1")


def wait_until(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Polls predicate until it returns a true value; fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, http.client.HTTPException) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        self.text = body.decode("utf-8", "replace")
        try:
            self.json = json.loads(self.text) if self.text else None
        except ValueError:
            self.json = None

    @property
    def error_code(self):
        if isinstance(self.json, dict) and isinstance(self.json.get("error"), dict):
            return self.json["error"].get("code")
        return None

    def __repr__(self):
        return f"<Response {self.status} {self.text[:300]!r}>"


def http_request(port, method, path, body=None, headers=None, host="127.0.0.1", timeout=30.0, raw_body=None):
    """One request on a fresh connection; returns a Response."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        h = dict(headers or {})
        data = raw_body
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


class Portico:
    """A `portico serve` process with its own state folder and ports."""

    def __init__(self, tmp_path, engine="builtin", settings=None, env=None, name="portico"):
        self.dir = tmp_path / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.dir / "state"
        self.api_port = free_port()
        self.http_port = free_port()
        self.https_port = free_port()
        self.settings = {
            "api_listen": f"127.0.0.1:{self.api_port}",
            "http_listen": f"127.0.0.1:{self.http_port}",
            "https_listen": f"127.0.0.1:{self.https_port}",
            "state_dir": str(self.state_dir),
            "engine": engine,
            "log_format": "json",
            "log_level": "debug",
        }
        if engine == "nginx":
            self.settings["nginx_managed"] = "true"
        if engine == "caddy":
            self.settings["caddy_managed"] = "true"
            self.settings["caddy_admin"] = f"127.0.0.1:{free_port()}"
        self.settings.update(settings or {})
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.log_path = self.dir / "portico.log"
        self.proc = None
        self.token = self.settings.get("api_token")

    # -- lifetime ---------------------------------------------------------
    def start(self, wait=True):
        flags = [f"--{k}={v}" for k, v in self.settings.items()]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([BIN, "serve", *flags], stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=str(self.dir))
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"portico exited with {self.proc.returncode}:\n{self.read_log()[-4000:]}")
            try:
                http_request(self.api_port, "GET", "/proxy-manager/health", timeout=2)
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"portico not ready after {timeout}s:\n{self.read_log()[-4000:]}")

    def stop(self, timeout=30.0, check=True):
        """SIGTERM, then wait.  With check, a stop that is not clean (a
        non-zero exit: a crash, a sanitizer report such as a leak, a hang
        past timeout) of a process still running fails, with the end of
        the log."""
        if self.proc is None:
            return None
        hung = False
        # A process that already ended was ended by the test (or meant to
        # fail at start); the check is about the stop itself.
        check = check and self.proc.poll() is None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                hung = True
                self.proc.kill()
                self.proc.wait(timeout=10)
        rc = self.proc.returncode
        self.proc = None
        self.log.close()
        if check and (hung or rc != 0):
            raise AssertionError(f"portico did not stop cleanly (exit {rc}{', hung' if hung else ''}):\n"
                                 f"{self.read_log()[-6000:]}")
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None
        self.log.close()

    def restart(self):
        self.stop()
        return self.start()

    def read_log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_records(self):
        out = []
        for line in self.read_log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    # -- the admin API ----------------------------------------------------
    def api(self, method, path, body=None, headers=None, token=None, raw_body=None, timeout=60.0):
        h = dict(headers or {})
        tok = token if token is not None else self.token
        if tok:
            h.setdefault("Authorization", f"Bearer {tok}")
        return http_request(self.api_port, method, path, body=body, headers=h, raw_body=raw_body, timeout=timeout)

    def put_proxy(self, name, body, **kw):
        return self.api("PUT", f"/proxies/{name}", body=body, **kw)

    # -- the data plane (builtin engine or the managed nginx) -------------
    def get(self, host, path="/", method="GET", headers=None, body=None, port=None, timeout=30.0):
        h = {"Host": host}
        h.update(headers or {})
        return http_request(port or self.http_port, method, path, headers=h, raw_body=body, timeout=timeout)


@pytest.fixture
def portico(tmp_path):
    """A factory: portico(engine=..., settings={...}) starts one instance."""
    started = []

    def make(engine="builtin", settings=None, env=None, start=True, name=None):
        p = Portico(tmp_path, engine=engine, settings=settings, env=env, name=name or f"portico{len(started)}")
        started.append(p)
        if start:
            p.start()
        return p

    yield make
    for p in started:
        p.stop()


class _UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _answer(self):
        up = self.server.upstream
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        up.record(self, body)
        if self.path.split("?")[0] == up.health_path:
            status = 200 if up.healthy else 503
            payload = {"status": "ok" if up.healthy else "unhealthy", "upstream": up.name}
        else:
            status = up.status
            payload = {"upstream": up.name, "method": self.command, "path": self.path,
                       "headers": {k.lower(): v for k, v in self.headers.items()}, "body_length": len(body)}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Upstream", up.name)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _answer


class Upstream:
    """A Python HTTP/1.1 upstream on 127.0.0.1: answers its health path
    with 200 (or 503 once `healthy` is False) and everything else with a
    JSON echo of what it received; keeps a log of the requests."""

    def __init__(self, name="up", health_path="/health"):
        self.name = name
        self.health_path = health_path
        self.healthy = True
        self.status = 200
        self.requests = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _UpstreamHandler)
        self.server.daemon_threads = True
        self.server.upstream = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def record(self, handler, body):
        with self._lock:
            self.requests.append({"method": handler.command, "path": handler.path,
                                  "headers": {k.lower(): v for k, v in handler.headers.items()}, "body": body})

    def paths(self):
        with self._lock:
            return [r["path"] for r in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream():
    """A factory of Python upstreams: upstream(name=...)."""
    made = []

    def make(name=None, health_path="/health"):
        u = Upstream(name or f"up{len(made)}", health_path)
        made.append(u)
        return u

    yield make
    for u in made:
        u.close()


def proxy_body(domain, port, host="127.0.0.1", **extra):
    """The seed's PUT body for one upstream."""
    body = {"domain": domain, "upstream_host": host, "upstream_port": port}
    body.update(extra)
    return body
