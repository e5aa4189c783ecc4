#!/usr/bin/python3
"""Benchmark of issue 2 (the control plane over nginx), on 127.0.0.1 only.

For N in --sizes (1, 1,000 and 10,000 by default) a fresh portico (engine
nginx, a managed nginx) gets N - 1 proxies from a registry sync (one
apply), then, REPS times:
  * the time of one PUT of a new proxy through the API (validate, back up,
    write, nginx -t, reload, confirm the new workers, verify, commit);
  * beside it, in the same state, a bare `nginx -t` of the same files and a
    bare reload (SIGHUP to the master until the new workers serve and the
    old ones left): what nginx alone costs.
It prints portico's overhead over nginx's own test + reload, the time of
GET /proxies at N proxies, and portico's resident memory at N.  Targets:
overhead < 10% of nginx's test + reload; GET /proxies at 10,000 < 100 ms;
RSS at 10,000 < 50 MB.

    bench/control.py [--bin build/portico] [--sizes 1,1000,10000] [--reps 3]

Every process started here is stopped by its PID; every wait is bounded.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, body=None, timeout=600):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        t0 = time.monotonic()
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        r = conn.getresponse()
        data = r.read()
        took = time.monotonic() - t0  # the answer, not this client parsing it
        return r.status, json.loads(data or b"null"), took
    finally:
        conn.close()


class Registry:
    """GET /droplets answers the droplets set in .droplets."""

    def __init__(self):
        registry = self
        self.droplets = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                data = json.dumps(registry.droplets).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Origin:
    """A tiny upstream answering 200 "ok" to everything."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "3")
                self.end_headers()
                self.wfile.write(b"ok\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(d))
        except OSError:
            pass
    return out


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


def is_shutting_down(pid):
    try:
        return "shutting down" in " ".join(cmdline(pid))
    except OSError:
        return True


def bare_reload(master, timeout=300):
    """SIGHUP the master; wait until a new worker runs and the old ones have
    left (or say they are shutting down).  Returns seconds."""
    old = set(children(master))
    t0 = time.monotonic()
    os.kill(master, signal.SIGHUP)
    while time.monotonic() - t0 < timeout:
        now = set(children(master))
        new = now - old
        if new and all(p not in now or is_shutting_down(p) for p in old):
            return time.monotonic() - t0
        time.sleep(0.002)
    raise RuntimeError("nginx did not reload in time")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_size(args, n, origin, registry, tmp):
    state = os.path.join(tmp, f"state-{n}")
    api, http_port = free_port(), free_port()
    registry.droplets = [{"name": f"r{i}", "domain": f"r{i}.bench.local", "host": "127.0.0.1", "port": origin.port}
                         for i in range(1, n)]
    flags = [f"--api_listen=127.0.0.1:{api}", f"--http_listen=127.0.0.1:{http_port}", "--https_listen=",
             f"--state_dir={state}", "--engine=nginx", "--nginx_managed=true", "--log_level=warn",
             f"--registry_url=http://127.0.0.1:{registry.port}", "--health_check_interval_ms=86400000"]
    log = open(os.path.join(tmp, f"portico-{n}.log"), "wb")
    proc = subprocess.Popen([args.bin, "serve", *flags], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                call(api, "GET", "/proxy-manager/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("portico did not start")
                time.sleep(0.05)
        if n > 1:
            st, body, secs = call(api, "GET", "/proxy-manager/sync-from-registry")
            if st != 200:
                raise RuntimeError(f"sync failed: {st} {body}")
            print(f"  N={n}: synced {n - 1} proxies in one apply: {secs:.2f} s", flush=True)
        masters = [p for p in children(proc.pid) if "master" in " ".join(cmdline(p))]
        master = masters[0]
        # The master's own command line reads "nginx: master process <argv...>".
        full = " ".join(cmdline(master)).split("master process", 1)[1].split()
        nginx_argv = [a for a in full if a not in ("-g", "daemon", "off;")]

        puts, tests, reloads = [], [], []
        for k in range(args.reps):
            body = {"domain": f"new{k}.bench.local", "upstream_host": "127.0.0.1", "upstream_port": origin.port,
                    "require_healthy": False}
            st, out, secs = call(api, "PUT", f"/proxies/new{k}", body)
            if st not in (200, 201):
                raise RuntimeError(f"PUT failed: {st} {out}")
            puts.append(secs)
            t0 = time.monotonic()
            subprocess.run(nginx_argv + ["-t"], check=True, capture_output=True, timeout=600)
            tests.append(time.monotonic() - t0)
            reloads.append(bare_reload(master))
        t_list = []
        for _ in range(5):
            st, out, secs = call(api, "GET", "/proxies")
            t_list.append(secs)
        rss = rss_kb(proc.pid)
        put, test, reload = statistics.median(puts), statistics.median(tests), statistics.median(reloads)
        bare = test + reload
        return {"n": n + args.reps - 1, "put_s": put, "nginx_t_s": test, "nginx_reload_s": reload,
                "overhead": (put - bare) / bare, "list_ms": statistics.median(t_list) * 1000,
                "listed": len(out), "rss_mb": rss / 1024}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "portico"))
    ap.add_argument("--sizes", default="1,1000,10000")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="portico-control-")
    origin, registry = Origin(), Registry()
    rows = []
    try:
        for n in [int(x) for x in args.sizes.split(",")]:
            rows.append(run_size(args, n, origin, registry, tmp))
    finally:
        origin.close()
        registry.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"{'proxies':>8} {'PUT s':>8} {'nginx -t s':>11} {'reload s':>9} {'overhead':>9} "
          f"{'GET /proxies ms':>16} {'RSS MB':>7}")
    for r in rows:
        print(f"{r['n']:>8} {r['put_s']:>8.3f} {r['nginx_t_s']:>11.3f} {r['nginx_reload_s']:>9.3f} "
              f"{r['overhead'] * 100:>8.1f}% {r['list_ms']:>16.1f} {r['rss_mb']:>7.1f}")
    print("targets: overhead < 10% of nginx -t + reload; GET /proxies at 10,000 < 100 ms; RSS at 10,000 < 50 MB")


if __name__ == "__main__":
    sys.exit(main())
