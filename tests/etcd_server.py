"""A real etcd server on loopback for the etcd backend tests.

`etcd_server` starts Debian's `etcd` binary on free client and peer ports
with a temporary data folder, waits until it answers /health, and stops it
after the test. The same server can be stopped and started again on the
same ports and data, which is how the tests cut a watcher's connection.
Without the binary the tests that use it are skipped with the reason.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import wait_for

ETCD = shutil.which("etcd")
ETCDCTL = shutil.which("etcdctl")

# Seconds to wait for a started server to report itself healthy.
START_TIMEOUT = 20.0
# Seconds a stopped server gets to exit after SIGTERM before SIGKILL.
STOP_GRACE = 5.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EtcdServer:
    """One single-member etcd cluster on loopback that a test controls."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.log_path = data_dir.parent / "etcd.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """host:port of the client API."""
        return f"127.0.0.1:{self.client_port}"

    def url(self, prefix: str = "/microservices") -> str:
        """The registry URL of this server with the given namespace."""
        return f"etcd://{self.address}{prefix}"

    def start(self) -> None:
        """Start etcd (again) on the same ports and data, wait until healthy."""
        if ETCD is None:
            raise RuntimeError("etcd binary not found")
        peer = f"http://127.0.0.1:{self.peer_port}"
        client = f"http://{self.address}"
        argv = [
            ETCD,
            "--name=corral-test",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=corral-test={peer}",
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(self.healthy, timeout=START_TIMEOUT, what=f"etcd on {self.address}")

    def healthy(self) -> bool:
        """Whether the server runs and answers /health with true."""
        if self.process is None or self.process.poll() is not None:
            return False
        try:
            url = f"http://{self.address}/health"
            with urllib.request.urlopen(url, timeout=1) as resp:
                return b'"true"' in resp.read()
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after the grace period."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_GRACE)
        self.process = None

    def etcdctl(self, *args: str) -> str:
        """Run etcdctl (API v3) against this server and return its output."""
        if ETCDCTL is None:
            pytest.skip("etcdctl not installed (apt-get install etcd-client)")
        env = dict(os.environ, ETCDCTL_API="3")
        done = subprocess.run(
            [ETCDCTL, f"--endpoints={self.address}", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return done.stdout


@pytest.fixture
def etcd_server(tmp_path: Path) -> Iterator[EtcdServer]:
    """A running etcd server for one test, stopped afterwards."""
    skip_without_etcd()
    server = EtcdServer(tmp_path / "etcd-data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def skip_without_etcd() -> None:
    """Skip the calling test when the etcd server or client is missing."""
    if ETCD is None:
        pytest.skip("etcd not installed (apt-get install etcd-server)")
    try:
        import etcd3gw  # noqa: F401
    except ImportError:
        pytest.skip("etcd3gw not installed (pip install -e '.[etcd]')")


_shared: EtcdServer | None = None


def shared_location(prefix: str = "/corral-test") -> str:
    """A registry URL on one etcd server shared by the test session.

    Each call gets its own namespace, so tests do not see each other's
    keys. The server starts at the first call and stops when the test
    process exits.
    """
    global _shared
    skip_without_etcd()
    if _shared is None or not _shared.healthy():
        folder = Path(tempfile.mkdtemp(prefix="corral-etcd-"))
        server = EtcdServer(folder / "data")
        server.start()
        atexit.register(_stop_shared, server, folder)
        _shared = server
    return _shared.url(f"{prefix}-{uuid.uuid4().hex[:12]}")


def _stop_shared(server: EtcdServer, folder: Path) -> None:
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)
