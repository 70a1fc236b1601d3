"""Spawning children and stopping whole process trees, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from supervisor import process
from tests.support import wait_for
from tests.up_support import gone

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX trees")


def _descendants(pid: int, count: int) -> list[int]:
    def found() -> list[int]:
        kids = [p.pid for p in psutil.Process(pid).children(recursive=True)]
        return kids if len(kids) >= count else []

    return wait_for(found, what=f"{count} descendants of {pid}")


def test_stop_tree_ends_sh_wrapper_and_its_sleeps(tmp_path: Path) -> None:
    proc = process.spawn(["sh", "-c", "sleep 1000 & sleep 1000"], os.environ, tmp_path)
    sleeps = _descendants(proc.pid, 2)

    process.stop_tree(proc, "SIGTERM", grace=5.0)

    assert proc.returncode is not None
    assert gone(sleeps)


def test_stop_tree_kills_what_ignores_the_stop_signal(tmp_path: Path) -> None:
    script = "trap '' TERM; sleep 1000 & while true; do sleep 0.05; done"
    proc = process.spawn(["sh", "-c", script], os.environ, tmp_path)
    kids = _descendants(proc.pid, 1)

    process.stop_tree(proc, "SIGTERM", grace=0.3)

    assert proc.returncode == -signal.SIGKILL
    assert gone(kids)


def test_child_gets_unbuffered_python_and_merged_output(tmp_path: Path) -> None:
    code = (
        "import os, sys; print(os.environ['PYTHONUNBUFFERED']); sys.stderr.write('e')"
    )
    proc = process.spawn([sys.executable, "-c", code], {"PATH": "/bin"}, tmp_path)
    out, _ = proc.communicate(timeout=10)

    assert out == b"1\ne"


def test_child_runs_in_its_own_session(tmp_path: Path) -> None:
    proc = process.spawn(["sleep", "1000"], os.environ, tmp_path)
    try:
        assert os.getsid(proc.pid) == proc.pid
    finally:
        process.stop_tree(proc, grace=2.0)


def test_child_dies_with_its_supervisor(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from supervisor.process import Spawner
        proc = Spawner().spawn(["sleep", "1000"], {{}}, ".")
        Path({str(pidfile)!r}).write_text(str(proc.pid))
        time.sleep(1000)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    parent = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        wait_for(pidfile.exists, what="child pid file")
        child = int(pidfile.read_text())
        parent.kill()
        parent.wait(5)
        wait_for(lambda: gone([child]), timeout=2.0, what="child to die")
    finally:
        parent.kill()


def test_kill_pids_spares_a_pid_with_another_start_time(tmp_path: Path) -> None:
    proc = process.spawn(["sleep", "1000"], os.environ, tmp_path)
    started = psutil.Process(proc.pid).create_time()
    try:
        assert process.kill_pids([(proc.pid, started - 100.0)]) == []
        assert proc.poll() is None

        assert process.kill_pids([(proc.pid, started)]) == [proc.pid]
        assert proc.wait(5) == -signal.SIGKILL
    finally:
        process.stop_tree(proc, grace=1.0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreaper")
def test_adopted_orphan_is_reaped_and_popen_keeps_its_exit_status(
    tmp_path: Path,
) -> None:
    # Run in a child interpreter: pytest itself must not adopt orphans.
    script = textwrap.dedent(
        """
        import time
        from supervisor import orphans, process
        assert orphans.become_subreaper()
        proc = process.spawn(
            ["sh", "-c", "(sleep 0.3 &); echo $$; exit 7"], {}, ".")
        line = proc.stdout.readline()
        deadline = time.monotonic() + 10
        reaped = []
        while not reaped and time.monotonic() < deadline:
            reaped = orphans.reap()
            time.sleep(0.02)
        print(len(reaped), proc.wait(5), flush=True)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "7"]
