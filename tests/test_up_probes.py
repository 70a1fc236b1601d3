"""Liveness and log_line probes inside a running `corral up`."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import wait_for
from tests.up_support import Up

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell")


def test_failed_liveness_deregisters_and_restarts(
    tmp_path: Path, runs: list[Up]
) -> None:
    config = """
    services:
      live:
        command: sleep 1000
        liveness: {exec: "test ! -f sick", interval: 100ms, retries: 2}
        backoff: {initial: 100ms}
    """
    run = Up(tmp_path, textwrap.dedent(config))
    runs.append(run)
    first = run.wait_registered("live-1")["live-1"]["pid"]

    (tmp_path / "sick").touch()
    wait_for(lambda: "live-1" not in run.instances(), what="live-1 deregistered")
    (tmp_path / "sick").unlink()

    def restarted() -> bool:
        entry = run.instances().get("live-1")
        return entry is not None and entry["pid"] != first

    wait_for(restarted, what="live-1 back with a new pid")
    assert run.has_line("live-1 liveness probe failed 2 times")


def test_log_line_readiness_waits_for_the_line(tmp_path: Path, runs: list[Up]) -> None:
    config = """
    services:
      talker:
        command: sh -c "sleep 0.5; touch said; echo server is UP; sleep 1000"
        readiness: {log_line: "is UP$", interval: 50ms, retries: 100}
    """
    run = Up(tmp_path, textwrap.dedent(config))
    runs.append(run)

    run.wait_registered("talker-1")

    assert (tmp_path / "said").exists()
    assert run.has_line("talker-1 | server is UP")


def test_own_record_is_repaired_after_a_foreign_rewrite(
    tmp_path: Path, runs: list[Up]
) -> None:
    run = Up(tmp_path, "services:\n  idle:\n    command: sleep 1000\n")
    runs.append(run)
    pid = run.wait_registered("idle-1")["idle-1"]["pid"]

    # What a reader that knows only the Kratos fields writes back.
    data = json.loads(run.registry_path.read_text())
    for group in data["services"].values():
        for entry in group:
            for key in ("pid", "pid_started", "host", "heartbeat"):
                entry.pop(key, None)
    foreign = run.registry_path.with_name("foreign.tmp")
    foreign.write_text(json.dumps(data))
    os.replace(foreign, run.registry_path)
    assert "pid" not in run.instances()["idle-1"]

    wait_for(
        lambda: run.instances().get("idle-1", {}).get("pid") == pid,
        timeout=3.0,
        what="the record's pid written back",
    )


def test_readiness_looks_again_soon_during_start_up(
    tmp_path: Path, runs: list[Up]
) -> None:
    # The service is ready 0.3 s after it starts; with a 60 s interval only
    # the quick start-up re-checks can see that before the test's deadline,
    # and none of those early failures may count towards `retries: 1`.
    config = """
    services:
      slow:
        command: sh -c "sleep 0.3; touch up; sleep 1000"
        readiness: {exec: "test -f up", interval: 60s, retries: 1}
    """
    run = Up(tmp_path, textwrap.dedent(config))
    runs.append(run)

    run.wait_registered("slow-1", timeout=20)

    assert not run.has_line("slow-1 failed")
