"""The CLI's one error boundary: problems of the machine and of the reader of
corral's output end in one line and an exit code, never a traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support import corral_cmd, corral_env, run_corral


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_state_folder_that_is_a_file_is_named_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "corral.yaml").write_text("services:\n  a:\n    command: sleep 100\n")
    (tmp_path / ".corral").write_text("not a folder")

    result = run_corral("up", cwd=tmp_path, timeout=30)

    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert str(tmp_path / ".corral") in line
    assert "a file stands where corral needs a folder" in line


def test_reading_a_missing_registry_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "registry.json"

    for action in (["ls"], ["get", "api"], ["prune"]):
        result = run_corral("registry", "--registry", str(missing), *action)

        assert result.returncode == 1, action
        assert "no registry file here" in _one_line(result.stderr)
    assert not (tmp_path / "typo").exists()


def test_a_folder_given_as_registry_is_a_usage_error(tmp_path: Path) -> None:
    result = run_corral("registry", "--registry", str(tmp_path), "ls")

    assert result.returncode == 2
    assert "is a folder, not a registry file" in _one_line(result.stderr)


def test_a_reader_that_goes_away_ends_the_listing_quietly(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    entries = [
        {"id": f"api-{n}", "name": "api", "endpoints": [f"tcp://127.0.0.1:{n}"]}
        for n in range(1, 3000)
    ]
    path.write_text(json.dumps({"services": {"api": entries}}))

    proc = subprocess.Popen(
        corral_cmd("registry", "--registry", str(path), "ls"),
        env=corral_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    errors = proc.stderr.read()
    proc.wait(timeout=30)

    assert first.startswith("SERVICE") or "api" in first
    assert proc.returncode == 0
    assert errors == ""


def test_up_detached_with_an_unknown_service_starts_nothing(tmp_path: Path) -> None:
    (tmp_path / "corral.yaml").write_text("services:\n  a:\n    command: sleep 100\n")

    result = run_corral("up", "-d", "nosuch", cwd=tmp_path, timeout=30)

    assert result.returncode == 2
    assert "no enabled service named nosuch" in _one_line(result.stderr)
    assert not (tmp_path / ".corral").exists()


def test_up_with_stdout_closed_still_runs(tmp_path: Path) -> None:
    (tmp_path / "corral.yaml").write_text(
        "services:\n  once:\n    command: echo done\n    restart: 'no'\n"
    )
    argv = " ".join(corral_cmd("up"))

    result = subprocess.run(
        ["sh", "-c", f"exec {argv} >&-"],
        cwd=tmp_path,
        env=corral_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    log = (tmp_path / ".corral" / "logs" / "once-1.log").read_text()
    assert log.rstrip().endswith(" done")


@pytest.mark.parametrize("follow", ["watch", "logs"])
def test_following_ends_when_its_reader_goes_away(tmp_path: Path, follow: str) -> None:
    (tmp_path / "corral.yaml").write_text("services:\n  x:\n    command: sleep 1\n")
    logs = tmp_path / ".corral" / "logs"
    logs.mkdir(parents=True)
    (logs / "x-1.log").write_text("2026-01-01T00:00:00.000000Z hello\n")
    registry = tmp_path / ".corral" / "registry.json"
    registry.write_text('{"services": {"x": [{"id": "x-1", "name": "x"}]}}')
    args = {
        "watch": ("registry", "--registry", str(registry), "watch", "x", "--json"),
        "logs": ("logs", "--follow", "--tail", "1"),
    }[follow]

    proc = subprocess.Popen(
        corral_cmd(*args),
        cwd=tmp_path,
        env=corral_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`

    try:
        proc.wait(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "Traceback" not in proc.stderr.read()
