#!/usr/bin/python3
"""Benchmarks of issue 5 (service discovery), on 127.0.0.1 only:

1. Registry sync of N droplets (1,000 and 10,000 by default) into a fresh
   portico with the builtin engine: the wall time of the sync call (fetch,
   plan, one apply, one store commit), the revisions it made (1), and
   portico's RSS before and after.
2. Health checking every upstream of the largest sync (10,000 distinct
   upstream addresses, one per proxy) at a 5 s interval: portico's CPU use
   over a bounded window, from /proc/<pid>/stat, with the checks done and
   the new upstream connections opened meanwhile (connection reuse).

The upstreams are bench/tools/hcfarm.c processes (5,000 listening ports
each, "200 ok" on kept-alive connections); the registry is a Python HTTP
server in this process.  Every process started here is stopped by its PID;
every wait is bounded.

    bench/discovery.py [--bin build/portico] [--sizes 1000,10000] [--window 30]
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FARM_PORTS_PER_PROCESS = 5000
HZ = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, timeout=600):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


class Registry:
    def __init__(self):
        self.body = b"[]"
        reg = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reg.body)))
                self.end_headers()
                self.wfile.write(reg.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Farm:
    """hcfarm processes serving n ports in all."""

    def __init__(self, tmp, n):
        self.procs, self.ports, self.stats = [], [], []
        exe = os.path.join(tmp, "hcfarm")
        subprocess.run(["cc", "-O2", "-o", exe, os.path.join(HERE, "tools", "hcfarm.c")], check=True)
        left = n
        while left > 0:
            k = min(left, FARM_PORTS_PER_PROCESS)
            stats = os.path.join(tmp, f"farm{len(self.procs)}.stats")
            p = subprocess.Popen([exe, str(k), stats], stdout=subprocess.PIPE, text=True)
            self.procs.append(p)
            self.stats.append(stats)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                line = p.stdout.readline().strip()
                if line == "ready":
                    break
                if not line:
                    raise RuntimeError("hcfarm stopped before it was ready")
                self.ports.append(int(line))
            left -= k

    def counters(self):
        acc = req = 0
        for s in self.stats:
            try:
                with open(s) as f:
                    parts = f.read().split()
                acc += int(parts[1])
                req += int(parts[3])
            except (OSError, IndexError, ValueError):
                pass
        return acc, req

    def close(self):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


class Portico:
    def __init__(self, binary, tmp, name, settings):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir)
        self.api = free_port()
        flags = {
            "api_listen": f"127.0.0.1:{self.api}",
            "http_listen": f"127.0.0.1:{free_port()}",
            "https_listen": "",
            "state_dir": os.path.join(self.dir, "state"),
            "engine": "builtin",
            "log_level": "warn",
        }
        flags.update(settings)
        self.log = open(os.path.join(self.dir, "portico.log"), "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTICO_")}
        self.proc = subprocess.Popen([binary, "serve"] + [f"--{k}={v}" for k, v in flags.items()],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"portico exited: see {self.dir}/portico.log")
            try:
                request(self.api, "GET", "/proxy-manager/health", timeout=2)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("portico did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


def droplets(ports, n):
    return json.dumps([{"name": f"svc-{i:05d}", "host": "127.0.0.1", "port": ports[i]} for i in range(n)]).encode()


def bench_sync(binary, tmp, reg, farm, n, keep=False):
    reg.body = droplets(farm.ports, n)
    p = Portico(binary, tmp, f"sync{n}", {"registry_url": reg.url, "base_domain": "bench.local",
                                          "health_check_interval_ms": "5000"})
    rss0 = rss_kib(p.proc.pid)
    t0 = time.monotonic()
    status, body = request(p.api, "GET", "/proxy-manager/sync-from-registry")
    took = time.monotonic() - t0
    res = json.loads(body)
    assert status == 200 and res["synced_count"] == n, body[:300]
    revisions = len(json.loads(request(p.api, "GET", "/revisions")[1]))
    t0 = time.monotonic()
    status, body = request(p.api, "GET", "/proxy-manager/sync-from-registry")
    again = time.monotonic() - t0
    assert json.loads(body)["changed"] is False
    row = {"droplets": n, "sync_s": round(took, 3), "resync_s": round(again, 3), "revisions": revisions,
           "rss_before_mib": round(rss0 / 1024, 1), "rss_after_mib": round(rss_kib(p.proc.pid) / 1024, 1),
           "apply": res.get("apply", {})}
    if keep:
        return row, p
    p.stop()
    return row, None


def bench_checks(p, farm, n, window):
    """CPU of portico while it checks n upstreams, once all are healthy."""
    deadline = time.monotonic() + 120
    healthy = 0
    while time.monotonic() < deadline:
        text = request(p.api, "GET", "/metrics")[1].decode()
        healthy = metric(text, 'portico_health_targets{state="healthy"}') or 0
        if healthy >= n:
            break
        time.sleep(1)
    text0 = request(p.api, "GET", "/metrics")[1].decode()
    acc0, req0 = farm.counters()
    t0, c0 = time.monotonic(), cpu_ticks(p.proc.pid)
    time.sleep(window)
    t1, c1 = time.monotonic(), cpu_ticks(p.proc.pid)
    acc1, req1 = farm.counters()
    text1 = request(p.api, "GET", "/metrics")[1].decode()
    name = 'portico_health_checks_total{result="success"}'
    checks = (metric(text1, name) or 0) - (metric(text0, name) or 0)
    failed = sum((metric(text1, f'portico_health_checks_total{{result="{r}"}}') or 0)
                 - (metric(text0, f'portico_health_checks_total{{result="{r}"}}') or 0)
                 for r in ("bad_status", "timeout", "error"))
    secs = t1 - t0
    return {"upstreams": n, "healthy_at_start": int(healthy), "window_s": round(secs, 1),
            "cpu_percent_of_one_core": round(100.0 * (c1 - c0) / HZ / secs, 2),
            "checks_per_s": round(checks / secs, 1), "failed_checks": int(failed),
            "new_connections_per_s": round((acc1 - acc0) / secs, 1),
            "farm_requests_per_s": round((req1 - req0) / secs, 1),
            "rss_mib": round(rss_kib(p.proc.pid) / 1024, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "portico"))
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--window", type=float, default=30.0)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp = tempfile.mkdtemp(prefix="portico-bench-discovery-")
    farm = reg = None
    kept = None
    try:
        farm = Farm(tmp, max(sizes))
        reg = Registry()
        rows = []
        for n in sizes:
            row, p = bench_sync(args.bin, tmp, reg, farm, n, keep=(n == max(sizes)))
            rows.append(row)
            print(f"sync {n:>6} droplets: {row['sync_s']:.3f} s (again, nothing new: {row['resync_s']:.3f} s), "
                  f"revisions {row['revisions']}, RSS {row['rss_before_mib']} -> {row['rss_after_mib']} MiB",
                  flush=True)
            kept = p or kept
        checks = bench_checks(kept, farm, max(sizes), args.window)
        print(f"health checks: {checks['upstreams']} upstreams every 5 s: "
              f"{checks['cpu_percent_of_one_core']}% of one core over {checks['window_s']} s, "
              f"{checks['checks_per_s']} checks/s, {checks['new_connections_per_s']} new connections/s, "
              f"RSS {checks['rss_mib']} MiB", flush=True)
        print(json.dumps({"sync": rows, "checks": checks}, indent=2))
    finally:
        if kept:
            kept.stop()
        if reg:
            reg.close()
        if farm:
            farm.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
