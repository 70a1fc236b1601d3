"""`corral registry ls|get|watch|prune`, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from registry import FileRegistry, ServiceInstance
from tests.support import corral_cmd, corral_env, run_corral


@pytest.fixture
def reg(tmp_path: Path) -> FileRegistry:
    registry = FileRegistry(tmp_path / ".corral" / "registry.json")
    registry.register(
        ServiceInstance(id="api-1", name="api", endpoints=["http://127.0.0.1:8001"])
    )
    registry.register(ServiceInstance(id="db-1", name="db", version="v2"))
    return registry


def test_ls_prints_a_table(reg: FileRegistry) -> None:
    result = run_corral("registry", "--registry", str(reg.path), "ls")

    assert result.returncode == 0, result.stderr
    header, api, db = result.stdout.splitlines()
    assert header.split() == ["SERVICE", "ID", "VERSION", "PID", "ENDPOINTS"]
    assert api.split() == ["api", "api-1", "-", "-", "http://127.0.0.1:8001"]
    assert db.split() == ["db", "db-1", "v2", "-", "-"]


def test_ls_json_uses_the_file_format(reg: FileRegistry) -> None:
    result = run_corral("registry", "ls", "--registry", str(reg.path), "--json")

    data = json.loads(result.stdout)
    assert sorted(data) == ["api", "db"]
    assert data["api"][0]["endpoints"] == ["http://127.0.0.1:8001"]


def test_get_finds_the_default_registry_beside_the_config(
    reg: FileRegistry, tmp_path: Path
) -> None:
    command = f"{Path(sys.executable).as_posix()} -c pass"
    config = f"services:\n  api:\n    command: {command}\n"
    (tmp_path / "corral.yaml").write_text(config)

    result = run_corral("registry", "get", "api", "--json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert [i["id"] for i in json.loads(result.stdout)] == ["api-1"]


def test_registry_from_environment(reg: FileRegistry, tmp_path: Path) -> None:
    result = run_corral(
        "registry", "get", "db", cwd=tmp_path, CORRAL_REGISTRY=reg.path.as_uri()
    )

    assert result.returncode == 0, result.stderr
    assert "db-1" in result.stdout


def test_prune_reports_what_it_removed(reg: FileRegistry) -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait(10)
    reg.register(ServiceInstance(id="w-1", name="worker", pid=ended.pid))

    result = run_corral("registry", "--registry", str(reg.path), "prune", "--json")

    assert [i["id"] for i in json.loads(result.stdout)] == ["w-1"]
    assert "worker" not in reg.list_services()


@pytest.mark.parametrize(
    ("location", "code", "phrase"),
    [("gopher://127.0.0.1/x", 2, "unsupported scheme"), (None, 1, "corrupt registry")],
)
def test_errors_are_one_line(
    tmp_path: Path, location: str | None, code: int, phrase: str
) -> None:
    broken = tmp_path / "registry.json"
    broken.write_text('{"services": ')

    result = run_corral("registry", "--registry", location or str(broken), "ls")

    assert result.returncode == code
    assert phrase in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_watch_json_prints_one_line_per_change(reg: FileRegistry) -> None:
    watcher = subprocess.Popen(
        corral_cmd("registry", "--registry", str(reg.path), "watch", "api", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=corral_env(),
    )
    try:
        assert watcher.stdout is not None
        first = json.loads(watcher.stdout.readline())
        assert [i["id"] for i in first] == ["api-1"]

        reg.register(ServiceInstance(id="db-2", name="db"))
        reg.register(ServiceInstance(id="api-2", name="api"))
        second = json.loads(watcher.stdout.readline())
        assert [i["id"] for i in second] == ["api-1", "api-2"]
    finally:
        watcher.kill()
        _, err = watcher.communicate(timeout=10)
    assert err == ""
