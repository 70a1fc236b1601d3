"""Processes that leave their service's tree (double fork and setsid) still
end with it: at Ctrl-C, and when that one service is stopped."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support import run_corral, wait_for
from tests.up_support import Up, gone

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="child subreaper is Linux only"
)

ESCAPER = """
import os, sys, time
from pathlib import Path

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        Path(sys.argv[1]).write_text(str(os.getpid()))
        time.sleep(1000)
    os._exit(0)
time.sleep(1000)
"""


@pytest.fixture
def tag() -> Iterator[str]:
    """A value set in the escaper's environment; the cleanup ends only
    processes that carry it, whatever the test found."""
    value = uuid.uuid4().hex
    yield value
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("ESCAPE_TAG") == value:
                proc.kill()


def _config(folder: Path, tag: str) -> str:
    script = folder / "escaper.py"
    script.write_text(ESCAPER)
    pidfile = folder / "escapee.pid"
    return textwrap.dedent(
        f"""
        services:
          esc:
            command: {sys.executable} {script} {pidfile}
            environment: {{ESCAPE_TAG: {tag}}}
            stop_grace_period: 2s
          other:
            command: sleep 1000
        """
    )


def _escapee(folder: Path, tag: str) -> int:
    """The grandchild's pid, once it runs outside the service's session."""
    pidfile = folder / "escapee.pid"
    wait_for(lambda: pidfile.exists() and pidfile.read_text(), what="escapee pid")
    pid = int(pidfile.read_text())
    proc = psutil.Process(pid)
    assert proc.environ()["ESCAPE_TAG"] == tag
    return pid


def test_ctrl_c_ends_a_double_forked_setsid_grandchild(
    tmp_path: Path, tag: str
) -> None:
    run = Up(tmp_path, _config(tmp_path, tag))
    try:
        run.wait_registered("esc-1", "other-1")
        escapee = _escapee(tmp_path, tag)

        assert run.signal(signal.SIGINT) == 0
        wait_for(lambda: gone([escapee]), timeout=5, what="escapee to end")
    finally:
        run.close()


def test_stopping_one_service_ends_its_escapee_only(tmp_path: Path, tag: str) -> None:
    run = Up(tmp_path, _config(tmp_path, tag))
    try:
        other = run.wait_registered("esc-1", "other-1")["other-1"]["pid"]
        escapee = _escapee(tmp_path, tag)

        result = run_corral("stop", "-f", str(run.config), "esc", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        wait_for(lambda: gone([escapee]), timeout=5, what="escapee to end")
        assert not gone([other])
        assert run.instances()["other-1"]["pid"] == other
    finally:
        run.close()


def test_an_escapee_ends_when_the_supervisor_is_killed_outright(
    tmp_path: Path, tag: str
) -> None:
    run = Up(tmp_path, _config(tmp_path, tag))
    try:
        run.wait_registered("esc-1", "other-1")
        escapee = _escapee(tmp_path, tag)
        state_file = tmp_path / ".corral" / "state.json"
        wait_for(
            lambda: escapee in _recorded_strays(state_file),
            what="the escapee listed in the state file",
        )

        run.proc.kill()
        run.proc.wait(5)

        wait_for(lambda: gone([escapee]), timeout=5, what="escapee to end")
    finally:
        run.close()


def _recorded_strays(state_file: Path) -> set[int]:
    try:
        data = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return set()
    return {entry["pid"] for entry in data.get("strays", [])}
