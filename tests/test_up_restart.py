"""`corral restart` of every service of a run brings them back; the run does
not take the moment between the stop and the start for its end."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import run_corral, wait_for
from tests.up_support import Up

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell")


def test_restarting_the_only_service_keeps_the_run(
    tmp_path: Path, runs: list[Up]
) -> None:
    config = """
    services:
      only:
        command: sleep 1000
    """
    run = Up(tmp_path, textwrap.dedent(config))
    runs.append(run)
    first = run.wait_registered("only-1")["only-1"]["pid"]

    result = run_corral("restart", "-f", str(run.config), "only", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    entry = wait_for(lambda: run.instances().get("only-1"), what="only-1 back")
    assert entry["pid"] != first
    assert run.proc.poll() is None
    assert not run.has_line("stopping all services")
