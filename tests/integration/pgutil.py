"""A private PostgreSQL for the integration tests (Debian's server
binaries; initdb into a temporary folder, as the postgres user when the
test runs as root), with a user that logs in with a password: the
`pg` fixture (one server per test module) and new databases on it."""

import glob
import itertools
import os
import shutil
import signal
import subprocess
import tempfile

import pytest

from conftest import free_port, wait_until

USER = "portico"
# Distinctive, so that a leak into the log cannot go unnoticed.
PASSWORD = "pg-Pass-7f3Kq9"


def _bindir():
    """The newest installed major version's server binaries."""
    dirs = glob.glob("/usr/lib/postgresql/*/bin")
    dirs = [d for d in dirs if os.path.exists(os.path.join(d, "postgres"))]
    assert dirs, "no PostgreSQL server in /usr/lib/postgresql/*/bin (Debian package postgresql)"
    return max(dirs, key=lambda d: int(d.split("/")[-2]))


class Postgres:
    """A private PostgreSQL on 127.0.0.1:port (scram-sha-256 there) and a
    Unix socket in its folder (trust, for the test's own psql)."""

    def __init__(self):
        self.bindir = _bindir()
        self.root = tempfile.mkdtemp(prefix="portico-pg-")
        self.data = os.path.join(self.root, "data")
        self.sock = os.path.join(self.root, "sock")
        os.mkdir(self.sock)
        self.port = free_port()
        self.proc = None
        self.log_path = os.path.join(self.root, "postgres.log")
        self.log = None
        self._names = itertools.count(1)
        # PostgreSQL refuses to run as root: then it runs as postgres.
        self.user = {}
        if os.geteuid() == 0:
            self.user = {"user": "postgres", "group": "postgres", "extra_groups": []}
            for d in (self.root, self.sock):
                shutil.chown(d, "postgres", "postgres")
        self.env = dict(os.environ, LC_ALL="C")

    def _server_cmd(self, *argv, timeout=60):
        r = subprocess.run([os.path.join(self.bindir, argv[0]), *argv[1:]], capture_output=True, text=True,
                           timeout=timeout, cwd=self.root, env=self.env, **self.user)
        assert r.returncode == 0, f"{argv[0]}: {r.stdout}{r.stderr}"
        return r.stdout

    def init(self):
        self._server_cmd("initdb", "-D", self.data, "-U", "postgres", "--auth-local=trust",
                         "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
        return self

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(self.bindir, "postgres"), "-D", self.data, "-k", self.sock, "-h", "127.0.0.1",
             "-p", str(self.port), "-c", "fsync=off", "-c", "full_page_writes=off"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.root, env=self.env, **self.user)
        wait_until(lambda: self.proc.poll() is not None or subprocess.run(
            [os.path.join(self.bindir, "pg_isready"), "-q", "-h", self.sock, "-p", str(self.port)],
            timeout=10).returncode == 0, timeout=30, what="PostgreSQL accepting connections")
        assert self.proc.poll() is None, self.read_log()[-3000:]
        return self

    def stop(self):
        """Fast shutdown (its sessions are ended), by PID; bounded."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGQUIT)
                self.proc.wait(timeout=10)
        self.proc = None
        self.log.close()

    def read_log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def psql(self, sql, db="postgres"):
        return subprocess.run([os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                               "-h", self.sock, "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql],
                              capture_output=True, text=True, timeout=30, check=True, env=self.env).stdout.strip()

    def new_database(self):
        """A new empty database owned by the test user; its URI."""
        name = f"portico_{next(self._names)}"
        self.psql(f'CREATE DATABASE "{name}" OWNER "{USER}"')
        return name, f"postgres://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{name}"

    def close(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def pg():
    server = Postgres()
    try:
        server.init().start()
        server.psql(f"CREATE ROLE \"{USER}\" LOGIN PASSWORD '{PASSWORD}'")
        yield server
    finally:
        server.close()
