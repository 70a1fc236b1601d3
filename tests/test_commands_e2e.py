"""Issue 5 end to end, every command a separate process of the real CLI:
`up -d`, `ps --json`, `logs --tail 5`, `restart api`, `stop api`,
`start api`, `down`, each checked in the registry file and in `ps` right
after it returns; meanwhile `registry watch api --json` prints one line
per change, and the dependents of api act by their on_dependency_change.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support import corral_cmd, corral_env, run_corral, wait_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGHUP")

FOLLOWER = """\
import os, signal, sys, time
events = sys.argv[1] + ".events"

def note(text):
    with open(events, "a") as f:
        f.write(text + "\\n")

signal.signal(signal.SIGHUP, lambda *_: note("hup"))
note("start " + os.environ.get("API_ENDPOINTS", ""))
print("following api at", os.environ.get("API_ENDPOINTS"), flush=True)
while True:
    time.sleep(60)
"""

CONFIG = """\
registry: .corral/registry.json
services:
  api:
    command: python -m http.server ${PORT} --bind 127.0.0.1
    port: auto
    endpoints: ["http://127.0.0.1:${PORT}"]
    readiness: {http: "http://127.0.0.1:${PORT}/", interval: 100ms, retries: 100}
    stop_grace_period: 5s
  web:
    command: python follower.py web
    depends_on: {api: {condition: service_healthy}}
    on_dependency_change: restart
  hup:
    command: python follower.py hup
    depends_on: {api: {condition: service_healthy}}
    on_dependency_change: SIGHUP
  quiet:
    command: python follower.py quiet
    depends_on: {api: {condition: service_healthy}}
    on_dependency_change: ignore
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "follower.py").write_text(FOLLOWER)
    config = tmp_path / "corral.yaml"
    config.write_text(CONFIG)
    yield config
    # Whatever happened, leave no supervisor behind.
    run_corral("down", "-f", str(config), timeout=60)


def corral(*args: str) -> subprocess.CompletedProcess[str]:
    result = run_corral(*args, timeout=90)
    assert result.returncode == 0, f"corral {' '.join(args)}: {result.stderr}"
    return result


def ps(config: Path) -> dict[str, dict[str, Any]]:
    rows = json.loads(corral("ps", "-f", str(config), "--json").stdout)
    return {row["service"]: row for row in rows}


def registered(config: Path) -> dict[str, list[str]]:
    """Instance id -> endpoints, straight from the registry file."""
    data = json.loads((config.parent / ".corral" / "registry.json").read_text())
    return {
        inst["id"]: inst["endpoints"]
        for found in data["services"].values()
        for inst in found
    }


def events(config: Path, name: str) -> list[str]:
    path = config.parent / f"{name}.events"
    return path.read_text().splitlines() if path.exists() else []


def test_control_a_background_environment(project: Path) -> None:
    config = str(project)
    watch = subprocess.Popen(
        corral_cmd("registry", "watch", "api", "-f", config, "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=corral_env(),
    )
    try:
        assert watch.stdout is not None
        assert json.loads(watch.stdout.readline()) == []  # watching from here

        endpoints = [_up(project), _restart(project)]
        _stop(project)
        endpoints.append(_start(project))
        _down(project)
    finally:
        watch.terminate()
        out, err = watch.communicate(timeout=30)

    seen = [
        [e for i in json.loads(line) for e in i["endpoints"]]
        for line in out.splitlines()
    ]
    a, b, c = ([e] for e in endpoints)
    assert seen == [a, [], b, [], c, []], err


def _up(project: Path) -> str:
    result = corral("up", "-d", "-f", str(project))
    assert "running in the background" in result.stdout

    rows = ps(project)
    assert {s: r["state"] for s, r in rows.items()} == dict.fromkeys(
        ("api", "web", "hup", "quiet"), "ready"
    )
    (endpoint,) = rows["api"]["endpoints"]
    assert registered(project)["api-1"] == [endpoint]

    tail = corral("logs", "-f", str(project), "--tail", "5").stdout.splitlines()
    for instance in ("api-1", "web-1", "hup-1", "quiet-1"):
        mine = [line for line in tail if line.startswith(f"{instance} ")]
        assert 1 <= len(mine) <= 5, tail
    assert any("GET / HTTP" in line for line in tail), tail
    assert any(f"following api at {endpoint}" in line for line in tail), tail

    again = run_corral("up", "-d", "-f", str(project))
    assert again.returncode == 1
    assert "already running" in again.stderr
    return str(endpoint)


def _restart(project: Path) -> str:
    before = ps(project)
    corral("restart", "-f", str(project), "api")

    rows = ps(project)
    assert rows["api"]["state"] == "ready"
    assert rows["api"]["pid"] != before["api"]["pid"]
    (endpoint,) = rows["api"]["endpoints"]
    assert endpoint != before["api"]["endpoints"][0]
    assert registered(project)["api-1"] == [endpoint]

    # restart: once, with the new endpoint, before the command returned;
    # SIGHUP: once; ignore: nothing.
    assert events(project, "web") == [
        f"start {before['api']['endpoints'][0]}",
        f"start {endpoint}",
    ]
    assert rows["web"]["state"] == "ready"
    assert rows["web"]["pid"] != before["web"]["pid"]
    wait_for(lambda: events(project, "hup")[1:] == ["hup"], what="one SIGHUP")
    return str(endpoint)


def _stop(project: Path) -> None:
    corral("stop", "-f", str(project), "api")
    assert ps(project)["api"]["state"] == "stopped"
    assert "api-1" not in registered(project)


def _start(project: Path) -> str:
    corral("start", "-f", str(project), "api")
    rows = ps(project)
    assert rows["api"]["state"] == "ready"
    (endpoint,) = rows["api"]["endpoints"]
    assert registered(project)["api-1"] == [endpoint]

    # The dependents that `stop api` took down come back with it.
    wait_for(
        lambda: all(r["state"] == "ready" for r in ps(project).values()),
        what="api's dependents back",
    )
    assert events(project, "web")[-1] == f"start {endpoint}"
    return str(endpoint)


def _down(project: Path) -> None:
    pids = [r["pid"] for r in ps(project).values() if r["pid"]]
    corral("down", "-f", str(project))

    assert registered(project) == {}
    assert not [p for p in pids if psutil.pid_exists(p)]
    after = run_corral("ps", "-f", str(project))
    assert after.returncode == 1
    assert "nothing is running" in after.stderr

    # Each dependent saw exactly what its policy asks for, and no more: a
    # start at `up`, one for the restart of api (web only) and one when
    # `start api` brought it back after `stop api`.
    assert len(events(project, "web")) == 3
    assert events(project, "hup").count("hup") == 1
    assert len([e for e in events(project, "hup") if e.startswith("start")]) == 2
    assert len(events(project, "quiet")) == 2


FAILING = """\
services:
  good: {command: python -c "import time; time.sleep(600)"}
  bad: {command: python -c "import sys; sys.exit(3)", max_restarts: 0}
  after:
    command: python -c "import time; time.sleep(600)"
    depends_on: {bad: {condition: service_healthy}}
"""


def test_up_detached_names_each_failed_service(tmp_path: Path) -> None:
    config = tmp_path / "corral.yaml"
    config.write_text(FAILING)
    try:
        result = run_corral("up", "-d", "-f", str(config), timeout=90)
        assert result.returncode == 1
        lines = result.stderr.splitlines()
        assert len(lines) == 2, lines
        assert lines[0].startswith("corral: after: ") and "'bad'" in lines[0]
        assert lines[1].startswith("corral: bad: ") and "code 3" in lines[1]
        assert ps(config)["good"]["state"] == "ready"
    finally:
        corral("down", "-f", str(config))
    assert not (tmp_path / ".corral" / "control.key").exists()
