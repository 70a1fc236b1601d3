"""Running `corral up` in a test: a temporary project, its output, its registry.

Every process a test starts is remembered with its descendants so that the
test can check exactly those pids (never "any sleep on the machine") and
clean them up even when an assertion fails.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from tests.support import start_corral, wait_for


def gone(pids: list[int]) -> bool:
    """Whether none of these processes runs any more (a zombie has ended)."""
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def descendants(pid: int) -> list[int]:
    """The pids below `pid` now."""
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


class Up:
    """One `corral up` on a config written into `folder`."""

    def __init__(
        self, folder: Path, config: str, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.folder = folder
        self.config = folder / "corral.yaml"
        self.config.write_text(config)
        self.registry_path = folder / ".corral" / "registry.json"
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.seen: dict[int, psutil.Process] = {}
        self.proc = start_corral(
            "up", "-f", str(self.config), *args, cwd=folder, **(env or {})
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        """Everything corral printed so far (children and its own events)."""
        with self._lock:
            return "\n".join(self.lines)

    def has_line(self, *parts: str) -> bool:
        """Whether one printed line contains all these parts."""
        with self._lock:
            return any(all(p in line for p in parts) for line in self.lines)

    def instances(self) -> dict[str, dict[str, Any]]:
        """The registry file's instances by id (empty if no file yet)."""
        try:
            data = json.loads(self.registry_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {i["id"]: i for group in data["services"].values() for i in group}

    def wait_registered(self, *ids: str, timeout: float = 20.0) -> dict[str, Any]:
        """Wait until all these ids are in the registry; return the instances."""

        def found() -> dict[str, Any]:
            if self.proc.poll() is not None:
                raise AssertionError(f"corral up ended early:\n{self.output()}")
            current = self.instances()
            return current if all(i in current for i in ids) else {}

        found_now = wait_for(found, timeout=timeout, what=f"{ids} registered")
        self.remember()
        return found_now

    def remember(self) -> list[int]:
        """Note corral's current descendants, for the checks and the cleanup."""
        try:
            found = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        self.seen.update((p.pid, p) for p in found)
        return [p.pid for p in found]

    def signal(self, sig: int) -> int:
        """Send `sig` to corral; wait for it to end; return its exit code."""
        self.remember()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        return code

    def close(self) -> None:
        """Kill whatever of this run is left (after a failed assertion)."""
        self.remember()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for proc in self.seen.values():
            # psutil refuses to signal a pid that now names another process.
            with contextlib.suppress(psutil.Error):
                proc.kill()


def elapsed_until(condition: Any, timeout: float, what: str) -> float:
    """Seconds until `condition()` holds (fails the test after `timeout`)."""
    start = time.monotonic()
    wait_for(condition, timeout=timeout, interval=0.005, what=what)
    return time.monotonic() - start
