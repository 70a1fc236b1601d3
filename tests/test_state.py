"""The state file, and ending what a killed supervisor left behind."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from supervisor import process, state
from tests.support import wait_for
from tests.up_support import gone

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX groups")


def _record(pid: int, started: float) -> dict[str, object]:
    return {"instance": "t-1", "service": "t", "pid": pid, "started": started}


def _children(pid: int, count: int) -> list[int]:
    kids = [p.pid for p in psutil.Process(pid).children()]
    return kids if len(kids) >= count else []


def test_state_file_is_written_atomically_and_keeps_extra_keys(tmp_path: Path) -> None:
    sf = state.StateFile(tmp_path / ".corral", tmp_path / "corral.yaml", "reg.json")
    sf.set("control", "sock")
    sf.set_children([_record(1, 2.0)])

    data = state.read_state(sf.path)
    assert data is not None
    assert data["control"] == "sock"
    assert data["children"] == [_record(1, 2.0)]
    assert data["supervisor"]["pid"] == os.getpid()
    assert list(sf.path.parent.iterdir()) == [sf.path]

    sf.remove()
    assert state.read_state(sf.path) is None


def test_unreadable_state_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")

    assert state.read_state(path) is None


def test_end_leftovers_ends_the_orphaned_grandchildren(tmp_path: Path) -> None:
    proc = process.spawn(["sh", "-c", "sleep 1000 & sleep 1000"], os.environ, tmp_path)
    started = psutil.Process(proc.pid).create_time()
    kids = wait_for(lambda: _children(proc.pid, 2), what="two sleeps")
    os.kill(proc.pid, signal.SIGKILL)  # the wrapper dies; its sleeps live on
    proc.wait(5)

    ended = state.end_leftovers({"children": [_record(proc.pid, started)]})

    assert set(kids) <= set(ended)
    wait_for(lambda: gone(kids), timeout=5, what="sleeps ended")


def test_end_leftovers_spares_a_reused_pid(tmp_path: Path) -> None:
    proc = process.spawn(["sleep", "1000"], os.environ, tmp_path)
    started = psutil.Process(proc.pid).create_time()
    try:
        assert (
            state.end_leftovers({"children": [_record(proc.pid, started - 50)]}) == []
        )
        assert proc.poll() is None
    finally:
        process.stop_tree(proc, grace=1.0)
