"""ps, restart, stop, start, down and the one-supervisor rule, through the
real CLI in other processes, against a stand-in supervisor that serves the
real control channel (tests/control_fake.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.control_commands import format_duration, format_table
from supervisor.control_server import InstanceStatus
from tests.support import REPO, corral_env, run_corral, wait_for

CONFIG = """\
services:
  db: {command: python -V}
  api: {command: python -V, depends_on: [db]}
  broken: {command: python -V}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "corral.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def fake(config: Path) -> Iterator[subprocess.Popen[str]]:
    script = str(REPO / "tests" / "control_fake.py")
    proc = subprocess.Popen(
        [sys.executable, script, str(config), "db", "api", "!broken"],
        stdout=subprocess.PIPE,
        text=True,
        env=corral_env(),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "serving"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def ps(config: Path) -> dict[str, dict[str, object]]:
    result = run_corral("ps", "-f", str(config), "--json")
    assert result.returncode == 0, result.stderr
    return {row["id"]: row for row in json.loads(result.stdout)}


def test_ps_lists_every_instance(config: Path, fake: subprocess.Popen[str]) -> None:
    rows = ps(config)
    assert set(rows) == {"db-1", "api-1", "broken-1"}
    assert rows["api-1"]["state"] == "ready"
    assert rows["api-1"]["endpoints"] == ["tcp://127.0.0.1:1"]
    assert isinstance(rows["api-1"]["uptime"], float)
    assert rows["broken-1"]["uptime"] is None

    table = run_corral("ps", "-f", str(config)).stdout.splitlines()
    assert table[0].split() == [
        "SERVICE",
        "ID",
        "STATE",
        "PID",
        "RESTARTS",
        "UPTIME",
        "ENDPOINTS",
    ]
    assert table[2].split()[:5] == ["api", "api-1", "ready", "4242", "0"]
    assert table[3].split()[:3] == ["broken", "broken-1", "failed"]


def test_steps_reach_the_supervisor(config: Path, fake: subprocess.Popen[str]) -> None:
    assert run_corral("restart", "-f", str(config), "api").returncode == 0
    assert ps(config)["api-1"]["restarts"] == 1

    assert run_corral("stop", "-f", str(config), "api").returncode == 0
    assert ps(config)["api-1"]["state"] == "stopped"

    assert run_corral("start", "-f", str(config), "api").returncode == 0
    assert ps(config)["api-1"]["state"] == "ready"

    unknown = run_corral("restart", "-f", str(config), "nope")
    assert unknown.returncode == 2
    assert "no service named nope" in unknown.stderr


def test_down_returns_once_the_supervisor_exited(
    config: Path, fake: subprocess.Popen[str]
) -> None:
    result = run_corral("down", "-f", str(config))
    assert result.returncode == 0, result.stderr
    # The fake is our child: reaped here, it must already have exited.
    assert fake.wait(timeout=1) == 0

    after = run_corral("ps", "-f", str(config))
    assert after.returncode == 1
    assert f"{config}: nothing is running" in after.stderr


def test_a_second_up_is_refused(config: Path, fake: subprocess.Popen[str]) -> None:
    for argv in (["up", "-d"], ["up"]):
        result = run_corral(*argv, "-f", str(config))
        assert result.returncode == 1, result.stderr
        assert "already running" in result.stderr
        assert f"pid {fake.pid}" in result.stderr
    assert ps(config)["db-1"]["state"] == "ready"


def test_nothing_running(config: Path) -> None:
    for argv in (["ps"], ["down"], ["restart", "api"]):
        result = run_corral(*argv, "-f", str(config))
        assert result.returncode == 1
        assert result.stderr.startswith(f"corral: {config}: nothing is running")


def test_a_killed_supervisor_leaves_nothing_that_blocks(
    config: Path, fake: subprocess.Popen[str]
) -> None:
    fake.kill()
    fake.wait(timeout=30)
    result = run_corral("ps", "-f", str(config))
    assert result.returncode == 1
    assert "supervisor that died" in result.stderr
    wait_for(lambda: not (config.parent / ".corral" / "control.key").exists())


def test_durations_read_well() -> None:
    assert format_duration(5.9) == "5s"
    assert format_duration(125) == "2m05s"
    assert format_duration(3 * 3600 + 7 * 60) == "3h07m"
    assert format_duration(2 * 86400 + 3600) == "2d01h"


def test_another_config_in_the_same_folder_is_named(
    config: Path, fake: subprocess.Popen[str]
) -> None:
    other = config.with_name("other.yaml")
    other.write_text(CONFIG)
    result = run_corral("ps", "-f", str(other))
    assert result.returncode == 1
    assert f"{other}: nothing is running for this config; {config} runs" in (
        result.stderr
    )

    result = run_corral("up", "-d", "-f", str(other))
    assert result.returncode == 1
    assert f"{config} already runs in this folder (pid {fake.pid})" in result.stderr


def test_ps_table_tells_why_an_instance_waits_or_failed() -> None:
    statuses = [
        InstanceStatus("db", "db-1", "failed", reason="exited with code 3"),
        InstanceStatus("web", "web-1", "starting", reason="waiting for db"),
        InstanceStatus("api", "api-1", "ready", pid=42, started_at=100.0),
    ]

    lines = format_table(statuses, now=160.0).splitlines()

    assert lines[0].split()[-1] == "REASON"
    assert lines[1].endswith("exited with code 3")
    assert lines[2].endswith("waiting for db")
    assert lines[3].split()[-1] == "-"
    assert "1m00s" in lines[3]
    no_reasons = format_table(statuses[2:], now=160.0)
    assert "REASON" not in no_reasons
