"""Helpers of the reliability tests: tagged runs of `corral up`, and finding
every process such a run left, wherever it was reparented.

Each run gets its own value of CORRAL_RELIABILITY_TAG in its environment.
corral hands its environment down to every child and grandchild, so a scan
of /proc for that value finds each process of the run, including one that
no state file and no recorded pid knows about.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import psutil

from tests.up_support import Up

TAG = "CORRAL_RELIABILITY_TAG"


def new_tag() -> str:
    """A value that no other process on the machine carries."""
    return uuid.uuid4().hex


def tagged(tag: str) -> list[psutil.Process]:
    """The live processes (zombies excluded) whose environment has `tag`."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(TAG) != tag:
                continue
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those of `procs` that still run (same pid and creation time)."""
    left = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            # is_running() compares the creation time, so a reused pid
            # does not count as the old process.
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc)
    return left


def kill_all(procs: list[psutil.Process]) -> None:
    """SIGKILL what is left of `procs` (cleanup after a failed assertion)."""
    for proc in alive(procs):
        with contextlib.suppress(psutil.Error):
            proc.kill()


class TaggedUp(Up):
    """`corral up` whose processes all carry CORRAL_RELIABILITY_TAG=`tag`."""

    def __init__(self, folder: Path, config: str, tag: str, *args: str) -> None:
        self.tag = tag
        super().__init__(folder, config, *args, env={TAG: tag})

    def started(self) -> list[int]:
        """Pids of the children corral reported as started, in order."""
        pids = []
        with self._lock:
            for line in self.lines:
                if " started with pid " in line:
                    pids.append(int(line.rsplit(" ", 1)[1]))
        return pids

    def close(self) -> None:
        """Up's cleanup, then SIGKILL anything still carrying the tag."""
        super().close()
        kill_all(tagged(self.tag))
