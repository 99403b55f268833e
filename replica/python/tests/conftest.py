"""Real `concoord replica` processes on 127.0.0.1 for the Python client's tests.

The binary is $CONCOORD_BIN, else the workspace's debug build under $CARGO_TARGET_DIR
(`.ci/test` builds it first)."""

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

import concoord.admin

# Fast failure detection and short leases, as the Rust integration tests use.
TIMING_FLAGS = ["--heartbeat-ms", "30", "--election-ms", "300", "--session-lease-ms", "2000"]


def concoord_bin():
    explicit = os.environ.get("CONCOORD_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/concoord-target"))
    for profile in ("debug", "release"):
        path = os.path.join(target, profile, "concoord")
        if os.path.exists(path):
            return path
    found = shutil.which("concoord")
    if found:
        return found
    pytest.exit("no concoord binary: set CONCOORD_BIN or run `cargo build -p concoord`", 2)


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Cluster:
    """A group of replica processes; the first founds it, the others join one by one."""

    def __init__(self, n=3, domain=None, extra=(), object="counter", env=None, pki=None,
                 token=None):
        self.bin = concoord_bin()
        # A directory made by `concoord certs`: every replica serves TLS with a certificate
        # of its own, and the status checks go over TLS.
        self.pki = pki
        # With an auth file among the flags: the admin token the replicas link with and the
        # status checks show.
        self.token = token
        self.object = object
        self.env = None if env is None else dict(os.environ, **env)
        self.ports = free_ports(n)
        self.dns_ports = free_ports(n) if domain else []
        self.domain = domain
        self.extra = list(extra)
        self.procs = [None] * n
        try:
            for i in range(n):
                self.start(i)
                self.wait_for_view(i + 1)
        except BaseException:
            self.stop()
            raise

    def addr(self, i):
        return "127.0.0.1:%d" % self.ports[i]

    @property
    def addrs(self):
        return ", ".join(self.addr(i) for i in range(len(self.ports)))

    def start(self, i):
        cmd = [self.bin, "replica", "-o", self.object, "-a", "127.0.0.1", "-p", str(self.ports[i])]
        cmd += TIMING_FLAGS + self.extra
        if self.token:
            cmd += ["--token", self.token]
        if self.pki:
            name = "replica-%d" % self.ports[i]
            cert = os.path.join(self.pki, name + ".crt")
            if not os.path.exists(cert):
                hosts = ["--host", "127.0.0.1"]
                if self.domain:
                    # The names the nameserver publishes in SRV records (r<id>.DOMAIN).
                    hosts += ["--host", "*." + self.domain]
                subprocess.run([self.bin, "certs", "issue", self.pki, name] + hosts,
                               check=True, stdout=subprocess.DEVNULL)
            cmd += ["--tls-cert", cert, "--tls-key", os.path.join(self.pki, name + ".key"),
                    "--tls-ca", os.path.join(self.pki, "ca.crt")]
        if i > 0:
            cmd += ["-b", self.addr(0)]
        if self.domain:
            cmd += ["-n", self.domain, "--dns-addr", "127.0.0.1", "--dns-port",
                    str(self.dns_ports[i])]
        logs = None if os.environ.get("CONCOORD_TEST_LOGS") else subprocess.DEVNULL
        self.procs[i] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logs, stderr=logs,
                                         env=self.env)

    def status(self, i):
        ca = os.path.join(self.pki, "ca.crt") if self.pki else None
        try:
            return concoord.admin.status(self.addr(i), timeout=0.5, ca=ca, token=self.token)
        except (OSError, concoord.ConCoordError):
            return None

    def wait_for_view(self, members, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, p in enumerate(self.procs):
                if p is None:
                    continue
                s = self.status(i)
                if s and s.get("is_leader") and len(s["view"]["members"]) == members:
                    return s
            time.sleep(0.05)
        raise AssertionError("no leader of a %d-member view within %ds" % (members, timeout))

    def leader(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, p in enumerate(self.procs):
                if p is not None:
                    s = self.status(i)
                    if s and s.get("is_leader"):
                        return i
            time.sleep(0.05)
        raise AssertionError("no leader within %ds" % timeout)

    def kill(self, i):
        p = self.procs[i]
        if p is not None:
            p.send_signal(signal.SIGKILL)
            p.wait()
            self.procs[i] = None

    def stop(self):
        for i in range(len(self.procs)):
            self.kill(i)


@pytest.fixture(scope="session")
def cluster():
    """One 3-replica group shared by the tests that do not kill replicas."""
    c = Cluster(3)
    yield c
    c.stop()


@pytest.fixture
def fresh_cluster():
    """A 3-replica group of the test's own (for tests that kill replicas)."""
    c = Cluster(3)
    yield c
    c.stop()


_names = iter(range(1, 1 << 30))


@pytest.fixture
def unique():
    """Object names no other test uses: unique('lock') -> 'lock-17'."""
    return lambda base: "%s-%d" % (base, next(_names))
