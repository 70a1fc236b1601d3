"""Each probe kind against real local servers and commands."""

from __future__ import annotations

import http.server
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.model import Probe
from supervisor.probes import LineWatch, ProbeContext, check, split_address


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = int(self.path.strip("/") or "200")
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "http://192.0.2.1/never-followed")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def context(tmp_path: Path) -> ProbeContext:
    return ProbeContext(dict(os.environ), tmp_path, LineWatch())


@pytest.mark.parametrize("status", [200, 204, 301, 302])
def test_http_passes_on_2xx_and_3xx(
    server: str, context: ProbeContext, status: int
) -> None:
    assert check(Probe("http", ""), f"{server}/{status}", context) is None


@pytest.mark.parametrize("status", [404, 500, 503])
def test_http_fails_on_4xx_and_5xx(
    server: str, context: ProbeContext, status: int
) -> None:
    problem = check(Probe("http", ""), f"{server}/{status}", context)
    assert problem is not None and str(status) in problem


def test_http_fails_when_nothing_listens(context: ProbeContext) -> None:
    port = _closed_port()
    assert check(Probe("http", ""), f"http://127.0.0.1:{port}/", context)


def test_tcp_connects_or_says_why(context: ProbeContext) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert check(Probe("tcp", ""), f"127.0.0.1:{port}", context) is None
    assert check(Probe("tcp", ""), f"127.0.0.1:{_closed_port()}", context)


def test_split_address_forms() -> None:
    assert split_address("127.0.0.1:80") == ("127.0.0.1", 80)
    assert split_address("[::1]:8080") == ("::1", 8080)
    assert split_address("tcp://localhost:9") == ("localhost", 9)
    with pytest.raises(ValueError, match="not host:port"):
        split_address("localhost")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell")
def test_exec_passes_on_exit_0_with_the_instance_env(
    context: ProbeContext,
) -> None:
    probe = Probe("exec", "", timeout=5)
    assert check(probe, 'test "$PYTHONUNBUFFERED" = 1', context) is None
    problem = check(probe, "exit 4", context)
    assert problem is not None and "exit code 4" in problem


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell")
def test_exec_is_killed_at_its_timeout(context: ProbeContext) -> None:
    started = time.monotonic()
    problem = check(Probe("exec", "", timeout=0.3), "sleep 1000", context)

    assert problem is not None and "no answer within 0.3 s" in problem
    assert time.monotonic() - started < 5


def test_log_line_matches_lines_seen_since_the_last_check(tmp_path: Path) -> None:
    lines = LineWatch(["listening on \\d+"])
    context = ProbeContext({}, tmp_path, lines)
    probe = Probe("log_line", "")

    assert check(probe, "listening on \\d+", context) is not None
    lines.feed("server listening on 8080")
    assert check(probe, "listening on \\d+", context) is None
    assert check(probe, "listening on \\d+", context) is not None


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
