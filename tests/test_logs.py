"""`corral logs`: merged in time order, prefixed like `up`, tail per
instance, rotated files included, follow across appends and rotations."""

from __future__ import annotations

import datetime
import io
import threading
from pathlib import Path

import pytest

from supervisor import logs
from supervisor.output import Printer, RotatingLog
from tests.support import run_corral, wait_for

T0 = datetime.datetime(2026, 1, 31, 12, 0, 0, tzinfo=datetime.timezone.utc)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def write(logs_dir: Path, instance: str, *lines: tuple[float, str]) -> None:
    log_file = RotatingLog(logs_dir / f"{instance}.log")
    for seconds, text in lines:
        log_file.write(text, now=at(seconds))
    log_file.close()


def shown(logs_dir: Path, **kwargs: object) -> list[str]:
    out = io.StringIO()
    logs.show(logs_dir, printer=Printer(out, colour=False), **kwargs)  # type: ignore[arg-type]
    return out.getvalue().splitlines()


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    path = tmp_path / ".corral" / "logs"
    write(path, "api-1", (1, "api one"), (3, "api three"), (5, "api five"))
    write(path, "db-1", (0, "db zero"), (2, "db two"), (4, "db four"))
    (path / "corral.log").write_text("supervisor output, not an instance\n")
    return path


def test_lines_are_merged_in_time_order_and_prefixed(logs_dir: Path) -> None:
    lines = shown(logs_dir, instances=None, tail=None, follow=False)
    assert lines == [
        "db-1  | db zero",
        "api-1 | api one",
        "db-1  | db two",
        "api-1 | api three",
        "db-1  | db four",
        "api-1 | api five",
    ]


def test_tail_counts_per_instance(logs_dir: Path) -> None:
    lines = shown(logs_dir, instances=["api-1", "db-1"], tail=1, follow=False)
    assert lines == ["db-1  | db four", "api-1 | api five"]
    assert shown(logs_dir, instances=["api-1"], tail=0, follow=False) == []


def test_rotated_files_are_read_oldest_first(tmp_path: Path) -> None:
    log_file = RotatingLog(tmp_path / "w-1.log", max_bytes=120, backups=3)
    for n in range(8):
        log_file.write(f"line {n}", now=at(n))
    log_file.close()
    assert (tmp_path / "w-1.log.1").exists()

    lines = shown(tmp_path, instances=["w-1"], tail=None, follow=False)
    numbers = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert numbers == sorted(numbers)
    assert numbers[-1] == 7
    assert shown(tmp_path, instances=["w-1"], tail=2, follow=False) == [
        "w-1 | line 6",
        "w-1 | line 7",
    ]


def test_follow_prints_appended_rotated_and_new_instances(logs_dir: Path) -> None:
    out = io.StringIO()
    stop = threading.Event()
    follower = threading.Thread(
        target=logs.show,
        args=(logs_dir, None, 1, True, Printer(out, colour=False), stop),
    )
    follower.start()
    try:
        # The tail is printed once the follower holds the files open.
        wait_for(lambda: "api five" in out.getvalue(), what="the tail")
        api = RotatingLog(logs_dir / "api-1.log", max_bytes=400, backups=2)
        api.write("after start", now=at(10))
        wait_for(lambda: "api-1 | after start" in out.getvalue(), what="appended")

        for n in range(12):  # crosses at least one rotation
            api.write(f"burst {n}", now=at(11 + n))
        wait_for(lambda: "burst 11" in out.getvalue(), what="the whole burst")
        assert (logs_dir / "api-1.log.1").exists()

        write(logs_dir, "cache-1", (30, "a newcomer"))
        wait_for(lambda: "a newcomer" in out.getvalue(), what="a new instance")
    finally:
        stop.set()
        follower.join(timeout=10)

    text = out.getvalue()
    for n in range(12):
        assert text.count(f"burst {n}\n") == 1
    assert "api three" not in text  # tail 1: the last old line only


def test_cli_logs_work_with_nothing_running(tmp_path: Path, logs_dir: Path) -> None:
    config = tmp_path / "corral.yaml"
    config.write_text(
        "services:\n  api: {command: python -V}\n  db: {command: python -V}\n"
    )
    result = run_corral("logs", "-f", str(config), "--tail", "2", "api")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["api-1 | api three", "api-1 | api five"]

    result = run_corral("logs", "-f", str(config), "nope")
    assert result.returncode == 2
    assert "no service named nope" in result.stderr
