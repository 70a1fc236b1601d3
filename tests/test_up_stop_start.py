"""`corral stop` of a service takes its dependents down with it, says so, and
`corral start` of that service brings them back."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import run_corral, wait_for
from tests.up_support import Up

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell")

CONFIG = """
services:
  base:
    command: sleep 1000
  dep:
    command: sleep 1000
    depends_on: [base]
  idle:
    command: sleep 1000
    depends_on: [base]
"""


def test_start_brings_back_what_stop_took_down(tmp_path: Path, runs: list[Up]) -> None:
    run = Up(tmp_path, textwrap.dedent(CONFIG))
    runs.append(run)
    run.wait_registered("base-1", "dep-1", "idle-1")
    assert (
        run_corral("stop", "-f", str(run.config), "idle", cwd=tmp_path).returncode == 0
    )

    stopped = run_corral("stop", "-f", str(run.config), "base", cwd=tmp_path)

    assert stopped.returncode == 0, stopped.stderr
    assert run.instances() == {}
    wait_for(lambda: run.has_line("stopping dep too: they depend on base"))

    started = run_corral("start", "-f", str(run.config), "base", cwd=tmp_path)

    assert started.returncode == 0, started.stderr
    wait_for(lambda: set(run.instances()) == {"base-1", "dep-1"}, what="dep back")
