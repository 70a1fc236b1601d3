"""Ports taken by someone else: a fixed port names the service and port; an
auto port never lands on a port in use, also when a restart finds its old
port taken (SPEC 3.1 `port`)."""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support import wait_for
from tests.up_support import Up

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

#: Listening sockets the test holds while corral picks auto ports.
HELD = 40

# Listens on $PORT itself, so a port that is not free makes it fail.
SERVER = """
import os, socket, time
s = socket.socket()
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen()
print("listening", flush=True)
time.sleep(1000)
"""


@pytest.fixture
def held() -> Iterator[list[socket.socket]]:
    """Listening sockets on ports the kernel chose; closed afterwards."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(HELD):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def _port(instance: dict[str, object]) -> int:
    endpoints = instance["endpoints"]
    assert isinstance(endpoints, list)
    return int(str(endpoints[0]).rsplit(":", 1)[1])


def _listen_on(port: int) -> socket.socket | None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        sock.close()
        return None
    return sock


def test_auto_ports_avoid_ports_in_use_also_on_restart(
    tmp_path: Path, held: list[socket.socket], runs: list[Up]
) -> None:
    (tmp_path / "server.py").write_text(SERVER)
    taken = {s.getsockname()[1] for s in held}
    fixed = held[0].getsockname()[1]
    config = f"""
    services:
      api:
        command: {sys.executable} server.py
        port: auto
        replicas: 4
        readiness: {{log_line: listening, interval: 50ms, retries: 100}}
        backoff: {{initial: 1s}}
      fixed:
        command: sleep 1000
        port: {fixed}
        restart: "no"
    """
    run = Up(tmp_path, textwrap.dedent(config))
    runs.append(run)
    ids = [f"api-{n}" for n in range(1, 5)]
    first = run.wait_registered(*ids)
    ports = {i: _port(first[i]) for i in ids}
    assert not set(ports.values()) & taken
    assert len(set(ports.values())) == 4

    # api-1 dies; its port is taken by someone else before the restart.
    victim = psutil.Process(int(first["api-1"]["pid"]))
    victim.kill()
    thief = wait_for(lambda: _listen_on(ports["api-1"]), timeout=5, what="the port")
    with contextlib.closing(thief):
        again = wait_for(
            lambda: (
                run.instances().get("api-1", {}).get("pid") not in (None, victim.pid)
                and run.instances()
            ),
            timeout=20,
            what="api-1 back",
        )
        new_port = _port(again["api-1"])
        assert new_port != ports["api-1"]
        assert new_port not in taken
        assert run.has_line(f"port {fixed} of service 'fixed' is already in use")
        assert "fixed-1" not in again
        assert run.signal(signal.SIGTERM) == 0
