"""A real ACME CA for the tests: Debian's Pebble and pebble-challtestsrv on
loopback ports picked here (PITFALLS.md, research/reliability.md §4).

challtestsrv is Pebble's DNS: every name resolves to 127.0.0.1, so Pebble
validates HTTP-01 by asking http://<domain>:<http_port>/ — the HTTP
listener of the portico under test.  Pebble's own TLS certificate is made
here with openssl (Debian ships none); its issuing root changes at every
start and is fetched from the management listener.  Validation runs at
once (PEBBLE_VA_NOSLEEP=1) and Pebble's default 5% of refused nonces is
left on.  Every process started here is stopped by its PID."""

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest

from conftest import free_port

START_TIMEOUT = 30.0


def _free_port():
    return free_port()


def _stop(proc, timeout=10.0):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


class Pebble:
    """Pebble validating HTTP-01 on http_port, with certificates valid for
    validity seconds (Pebble's default when None)."""

    def __init__(self, workdir, http_port, validity=None, env=None):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.http_port = http_port
        self.validity = validity
        self.extra_env = dict(env or {})
        self.acme_port = _free_port()
        self.mgmt_port = _free_port()
        self.dns_port = _free_port()
        self.ct_mgmt_port = _free_port()
        self.tls_port = _free_port()
        self.ca_file = str(self.dir / "pebble-cert.pem")
        self.key_file = str(self.dir / "pebble-key.pem")
        self.directory_url = f"https://127.0.0.1:{self.acme_port}/dir"
        self.pebble = None
        self.challtest = None
        self._logs = []
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", self.key_file, "-out", self.ca_file, "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=60)
        cfg = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.acme_port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": self.ca_file,
            "privateKey": self.key_file,
            "httpPort": http_port,
            "tlsPort": self.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }}
        if validity is not None:
            cfg["pebble"]["certificateValidityPeriod"] = validity
        self.config = self.dir / "pebble.json"
        self.config.write_text(json.dumps(cfg))

    def _spawn(self, argv, env, log_name):
        log = open(self.dir / log_name, "ab")
        self._logs.append(log)
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(self.dir))

    def _context(self):
        return ssl.create_default_context(cafile=self.ca_file)

    def _get(self, url, timeout=2.0):
        with urllib.request.urlopen(url, context=self._context(), timeout=timeout) as r:
            return r.status, r.read()

    def start(self):
        if self.challtest is None:
            self.challtest = self._spawn(
                ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-http01", "",
                 "-https01", "", "-tlsalpn01", "", "-dns01", f"127.0.0.1:{self.dns_port}",
                 "-management", f"127.0.0.1:{self.ct_mgmt_port}"],
                None, "challtestsrv.log")
        env = dict(os.environ)
        env["PEBBLE_VA_NOSLEEP"] = "1"
        env.update(self.extra_env)
        self.pebble = self._spawn(["pebble", "-config", str(self.config), "-dnsserver",
                                   f"127.0.0.1:{self.dns_port}"], env, "pebble.log")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.pebble.poll() is not None:
                raise AssertionError(f"pebble exited with {self.pebble.returncode}:\n{self.log()[-3000:]}")
            try:
                if self._get(self.directory_url)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"pebble not ready after {START_TIMEOUT}s:\n{self.log()[-3000:]}")

    def stop_ca(self):
        """Stops Pebble (the CA) only; challtestsrv stays."""
        _stop(self.pebble)
        self.pebble = None

    def stop(self):
        self.stop_ca()
        _stop(self.challtest)
        self.challtest = None
        for log in self._logs:
            log.close()
        self._logs = []

    def log(self):
        try:
            return (self.dir / "pebble.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def root_file(self):
        """Pebble's current issuing root, written to a file for ssl contexts."""
        status, body = self._get(f"https://127.0.0.1:{self.mgmt_port}/roots/0")
        assert status == 200
        path = self.dir / "root.pem"
        path.write_bytes(body)
        return str(path)

    def settings(self, email="ops@example.com"):
        """portico settings that point at this CA."""
        return {"acme_directory": self.directory_url, "acme_ca_bundle": self.ca_file, "acme_email": email}


@pytest.fixture
def pebble(tmp_path):
    """A factory: pebble(http_port, validity=None, env=None) starts one."""
    made = []

    def make(http_port, validity=None, env=None, start=True):
        p = Pebble(tmp_path / f"pebble{len(made)}", http_port, validity=validity, env=env)
        made.append(p)
        if start:
            p.start()
        return p

    yield make
    for p in made:
        p.stop()


def https_connection(port, domain, cafile, timeout=15.0):
    """An HTTPS connection to 127.0.0.1:port with SNI and verification for
    domain against cafile; returns (http.client connection, tls socket)."""
    import http.client

    ctx = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    tls = ctx.wrap_socket(raw, server_hostname=domain)
    conn = http.client.HTTPConnection(domain, port, timeout=timeout)
    conn.sock = tls
    return conn, tls


def served_fingerprint(port, domain, cafile):
    """SHA-256 of the certificate served for domain (a fresh connection)."""
    import hashlib

    conn, tls = https_connection(port, domain, cafile)
    try:
        return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
    finally:
        conn.close()
