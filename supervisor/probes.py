"""Readiness and liveness checks: http, tcp, exec and log_line.

`check` runs one attempt and says why it failed (None when it passed);
the instance decides about interval, retries and initial_delay, since it
also has to notice the child's exit while it waits.
"""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor import process
from supervisor.model import Probe

log = logging.getLogger(__name__)


class LineWatch:
    """Remembers whether lines matching given patterns were printed.

    The output reader feeds every line; a probe asks whether a match came
    since it last asked.
    """

    def __init__(self, patterns: list[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._patterns = {p: re.compile(p) for p in patterns or []}
        self._hits: set[str] = set()

    def feed(self, line: str) -> None:
        """Look at one output line."""
        with self._lock:
            for source, pattern in self._patterns.items():
                if pattern.search(line):
                    self._hits.add(source)

    def take(self, pattern: str) -> bool:
        """Whether `pattern` matched since the last call; starts watching it."""
        with self._lock:
            if pattern not in self._patterns:
                self._patterns[pattern] = re.compile(pattern)
            hit = pattern in self._hits
            self._hits.discard(pattern)
            return hit


@dataclass
class ProbeContext:
    """What a probe may need besides its target: the instance's environment,
    folder and output lines."""

    env: Mapping[str, str]
    cwd: Path
    lines: LineWatch


def check(probe: Probe, target: str, context: ProbeContext) -> str | None:
    """Run one attempt of `probe` at the rendered `target`.

    Returns None when it passed, else a short reason for the log.
    """
    try:
        if probe.kind == "http":
            return _http(target, probe.timeout)
        if probe.kind == "tcp":
            return _tcp(target, probe.timeout)
        if probe.kind == "exec":
            return _exec(target, probe.timeout, context)
        return None if context.lines.take(target) else f"no line matched {target!r}"
    except (OSError, ValueError) as exc:
        return f"{probe.kind} {target}: {exc}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report a redirect as its 3xx status instead of following it: the
    answer is what counts, and the target may point anywhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# Proxies from the environment must not see probes of local services.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def _http(url: str, timeout: float) -> str | None:
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    if 200 <= status < 400:
        return None
    return f"http {url}: status {status}"


def split_address(address: str) -> tuple[str, int]:
    """(host, port) from `host:port`, `[::1]:port` or `tcp://host:port`."""
    parsed = urllib.parse.urlsplit(address if "//" in address else f"//{address}")
    if parsed.hostname is None or parsed.port is None:
        raise ValueError(f"{address!r} is not host:port")
    return parsed.hostname, parsed.port


def _tcp(address: str, timeout: float) -> str | None:
    host, port = split_address(address)
    with socket.create_connection((host, port), timeout=timeout):
        return None


def _exec(command: str, timeout: float, context: ProbeContext) -> str | None:
    shell = ["cmd", "/c"] if sys.platform == "win32" else ["sh", "-c"]
    proc = process.spawn([*shell, command], context.env, context.cwd)
    try:
        proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.stop_tree(proc, "SIGKILL", grace=0.0)
        proc.communicate()
        return f"exec {command!r}: no answer within {timeout:g} s"
    if proc.returncode != 0:
        return f"exec {command!r}: exit code {proc.returncode}"
    return None
