"""A small guard process that ends a killed supervisor's process trees.

The parent-death signal reaches only a supervisor's direct children; the
grandchildren that `sh -c` wrappers leave behind would live on until the
next `corral up`. The guard holds the read end of a pipe whose write end
only the supervisor has: end of file means the supervisor is gone. If it
went without removing its state file, the guard ends every process group
recorded there, checking each pid's creation time first.

Run as `python -m supervisor.watchdog STATE_FILE SUPERVISOR_PID`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from supervisor import process, state

log = logging.getLogger(__name__)


def start(state_path: Path) -> subprocess.Popen[bytes] | None:
    """Start the guard of this supervisor (POSIX only; Windows has job objects).

    Keep the returned process: closing its stdin (or dying) triggers it.
    """
    if sys.platform == "win32":
        return None
    argv = [sys.executable, "-m", "supervisor.watchdog", str(state_path)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    try:
        # Tracked, so the orphan sweeps and the reaper leave the guard alone.
        return process.tracked(
            lambda: subprocess.Popen(
                [*argv, str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        )
    except OSError as exc:
        log.warning("cannot start the orphan guard: %s", exc)
        return None


def release(guard: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """Tell the guard the supervisor ended cleanly, and wait for it."""
    if guard is None or guard.stdin is None:
        return
    guard.stdin.close()
    try:
        guard.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("orphan guard pid %s did not end; killing it", guard.pid)
        guard.kill()
        guard.wait()


def main(argv: Sequence[str]) -> int:
    """Wait for the supervisor to go; end what its state file still lists."""
    state_path, supervisor = Path(argv[0]), int(argv[1])
    for name in ("SIGINT", "SIGHUP", "SIGTERM"):
        # A Ctrl-C or hang-up meant for the supervisor must not remove the
        # guard; only the pipe decides when it acts.
        signal.signal(signal.Signals[name], signal.SIG_IGN)
    sys.stdin.buffer.read()

    data = state.read_state(state_path)
    if data is None or (data.get("supervisor") or {}).get("pid") != supervisor:
        return 0
    state.end_leftovers(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
