"""The state file `.corral/state.json`: who runs this environment.

It records the supervisor and every child it spawned, each with its
creation time, so that the next `corral up` can end what a supervisor that
was killed outright left behind without ever touching a process that only
reuses one of those pids. Format (version 1)::

    {"version": 1, "config": "/abs/corral.yaml", "registry": "...",
     "supervisor": {"pid": 41, "started": 1767000000.5},
     "children": [{"instance": "api-1", "service": "api", "pid": 42,
                   "started": 1767000001.25, "pgid": 42}],
     "updated": 1767000002.0}

Other keys (added by the control channel, say) are kept on every rewrite.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from supervisor import process

log = logging.getLogger(__name__)

STATE_NAME = "state.json"
VERSION = 1


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temporary file beside `path`, fsync, then replace."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def read_state(path: Path) -> dict[str, Any] | None:
    """The state file's content, or None when missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable state file %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def same_process(pid: int, started: float) -> bool:
    """Whether `pid` still names the process created at `started`."""
    try:
        return abs(psutil.Process(pid).create_time() - started) <= 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # exists but cannot be inspected: count it as alive


def process_started(pid: int) -> float | None:
    """The creation time of `pid`, or None if it cannot be read."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


class StateFile:
    """The state file of one run, rewritten whenever a child comes or goes.

    A change is written at once by the thread that makes it, unless another
    write is under way; then it is left to a background thread, which
    writes the latest content as soon as that write ends. Fifty children
    starting at once thus cost a handful of fsyncs instead of one or two
    each, no instance waits behind another's write, and the file still
    catches up within one write of the last change.
    """

    def __init__(self, state_dir: Path, config: Path, registry: str) -> None:
        self.path = state_dir / STATE_NAME
        self._lock = threading.Condition()
        self._dirty = False
        self._writing = False
        self._removed = False
        self._flusher: threading.Thread | None = None
        pid = os.getpid()
        self._data: dict[str, Any] = {
            "version": VERSION,
            "config": str(config),
            "registry": registry,
            "supervisor": {"pid": pid, "started": process_started(pid)},
            "children": [],
        }

    def set(self, key: str, value: Any) -> None:
        """Record another fact of the run (e.g. the control address)."""
        self._change(key, value)

    def set_children(self, children: list[dict[str, Any]]) -> None:
        """Record the children that run now."""
        self._change("children", children)

    def remove(self) -> None:
        """Delete the file at a clean end of the run, after any write under way."""
        with self._lock:
            self._removed = True
            self._lock.notify_all()
            self._lock.wait_for(lambda: not self._writing)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _change(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._dirty = True
            if self._writing or self._removed:
                self._lock.notify_all()
                return  # the flusher writes it once the write under way ends
            data = self._take()
        self._write(data)

    def _take(self) -> dict[str, Any]:
        """The content to write now; the caller holds `_lock`."""
        self._writing = True
        self._dirty = False
        self._data["updated"] = time.time()
        return dict(self._data)  # values are replaced on change, never mutated

    def _write(self, data: dict[str, Any]) -> None:
        try:
            write_atomic(self.path, data)
        except OSError as exc:
            log.warning("cannot write state file %s: %s", self.path, exc)
        finally:
            with self._lock:
                self._writing = False
                self._lock.notify_all()
                if self._dirty and self._flusher is None:
                    self._flusher = threading.Thread(
                        target=self._flush, name="corral-state", daemon=True
                    )
                    self._flusher.start()

    def _flush(self) -> None:
        """Write what changed while another write was under way, until removed."""
        while True:
            with self._lock:
                self._lock.wait_for(
                    lambda: self._removed or (self._dirty and not self._writing)
                )
                if self._removed:
                    return
                data = self._take()
            self._write(data)


def previous_supervisor(data: dict[str, Any]) -> int | None:
    """The pid of the supervisor that wrote `data`, if it still runs."""
    sup = data.get("supervisor") or {}
    pid, started = sup.get("pid"), sup.get("started")
    if not isinstance(pid, int) or pid == os.getpid():
        return None
    if isinstance(started, (int, float)) and same_process(pid, float(started)):
        return None if _is_zombie(pid) else pid
    return None


def _is_zombie(pid: int) -> bool:
    # A supervisor killed outright stays a zombie until its parent reaps it;
    # it runs nothing any more, so a new run need not wait for the reaping.
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def end_leftovers(data: dict[str, Any]) -> list[int]:
    """End the children (and their process groups) a dead run left behind.

    A child is ended only if its pid still has the recorded creation time,
    and its process group (whose id is the child's pid) only when that pid
    is unused or still the old child's: a group id cannot be reused while
    the group has members, so what is found in it is what the child left.
    """
    children = [c for c in data.get("children") or [] if isinstance(c, dict)]
    owned = [
        (int(c["pid"]), float(c["started"]))
        for c in children
        if isinstance(c.get("pid"), int) and isinstance(c.get("started"), (int, float))
    ]
    ended = process.kill_pids(owned + _recorded(data.get("strays")))
    for pid, started in owned:
        # The group's id is the old child's pid. While that pid is unused
        # or still names the old child (a zombie, say), no other group can
        # have taken the id, so whatever is in the group is ours to end.
        if not psutil.pid_exists(pid) or same_process(pid, started):
            ended.extend(_kill_group(pid))
    return ended


def _recorded(entries: Any) -> list[tuple[int, float]]:
    # Processes that escaped their service's tree (double fork and setsid)
    # and that the supervisor adopted: ended by pid, after the same check of
    # their creation time.
    if not isinstance(entries, list):
        return []
    return [
        (int(e["pid"]), float(e["started"]))
        for e in entries
        if isinstance(e, dict)
        and isinstance(e.get("pid"), int)
        and isinstance(e.get("started"), (int, float))
    ]


def _kill_group(pgid: int) -> list[int]:
    if sys.platform == "win32":
        return []
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getpgid(proc.pid) == pgid:
                members.append(proc.pid)
    if members:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    return members
