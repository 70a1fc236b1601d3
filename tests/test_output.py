"""The printer, line splitting and the rotating log files."""

from __future__ import annotations

import datetime
import io
import os
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from supervisor.output import (
    DISPLAY_LIMIT,
    Printer,
    RotatingLog,
    colour_of,
    pump,
    split_lines,
    timestamp,
)
from tests.support import wait_for
from tests.up_support import Up


def test_split_lines_joins_chunks_and_cuts_endless_lines() -> None:
    chunks = [b"ab", b"c\nde", b"f\n", b"x" * 10, b"y"]

    assert list(split_lines(chunks, limit=4)) == [
        b"abc",
        b"def",
        b"xxxx",
        b"xxxx",
        b"xxy",
    ]


def test_split_lines_hands_on_a_partial_line_when_told_the_pipe_is_quiet() -> None:
    chunks = [b"Password: ", b"", b"", b"secret\nnext", b"", b"\n"]

    assert list(split_lines(chunks)) == [b"Password: ", b"secret", b"next"]


@pytest.mark.skipif(sys.platform == "win32", reason="pipes cannot be polled")
def test_pump_shows_a_partial_line_once_the_pipe_is_quiet() -> None:
    seen: list[str] = []
    read, write = os.pipe()
    reader = threading.Thread(target=pump, args=(os.fdopen(read, "rb"), seen.append))
    reader.start()

    os.write(write, b"Continue? [y/N] ")
    wait_for(lambda: seen == ["Continue? [y/N] "], timeout=5, what="the prompt")
    os.write(write, b"one")
    os.write(write, b" line\n")
    os.close(write)
    reader.join(timeout=5)

    assert seen == ["Continue? [y/N] ", "one line"]


@pytest.mark.skipif(sys.platform == "win32", reason="pipes cannot be polled")
def test_up_shows_a_prompt_and_progress_dots_live(tmp_path: Path) -> None:
    script = tmp_path / "prompt.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time
            for n in range(3):
                print(f"whole line {n}")
            sys.stdout.write("Proceed? ")
            time.sleep(1000)
            """
        )
    )
    config = f"services:\n  asker: {{command: {sys.executable} {script}}}\n"
    run = Up(tmp_path, config)
    try:
        wait_for(lambda: run.has_line("asker-1 | Proceed? "), what="the prompt")
        log = tmp_path / ".corral" / "logs" / "asker-1.log"

        assert "Proceed? " in log.read_text()
        assert all(run.has_line(f"asker-1 | whole line {n}") for n in range(3))
    finally:
        run.close()


def test_pump_decodes_bad_bytes_and_drops_carriage_returns() -> None:
    seen: list[str] = []
    read, write = os.pipe()
    os.write(write, b"ok\r\nbad \xff\nlast")
    os.close(write)

    pump(os.fdopen(read, "rb"), seen.append)

    assert seen == ["ok", "bad \ufffd", "last"]


def test_printer_prefixes_aligns_and_cuts() -> None:
    stream = io.StringIO()
    printer = Printer(stream, colour=False)
    printer.reserve(["api-1", "worker-1"])

    printer.line("api-1", "hello")
    printer.line("worker-1", "x" * (DISPLAY_LIMIT + 5))

    first, second = stream.getvalue().splitlines()
    assert first == "api-1    | hello"
    assert second.endswith("[... 5 more characters in the log]")


def test_printer_colours_only_when_asked() -> None:
    stream = io.StringIO()
    Printer(stream, colour=True).line("api-1", "hi")

    assert stream.getvalue().startswith(f"\x1b[{colour_of('api-1')}m")
    assert colour_of("api-1") == colour_of("api-1")


def test_log_lines_carry_sortable_utc_times(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "logs" / "api-1.log")
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=datetime.timezone.utc)

    log.write("hello", now=moment)
    log.close()

    text = (tmp_path / "logs" / "api-1.log").read_text()
    assert text == "2026-01-02T03:04:05.000006Z hello\n"
    assert len(timestamp()) == len("2026-01-02T03:04:05.000006Z")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_log_files_are_private(tmp_path: Path) -> None:
    RotatingLog(tmp_path / "logs" / "a.log").close()

    assert os.stat(tmp_path / "logs").st_mode & 0o777 == 0o700
    assert os.stat(tmp_path / "logs" / "a.log").st_mode & 0o777 == 0o600


def test_log_rotates_by_size_and_keeps_backups(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    log = RotatingLog(path, max_bytes=100, backups=2)

    for n in range(10):
        log.write(f"line {n} " + "x" * 40)
    log.close()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.log", "a.log.1", "a.log.2"]
    assert "line 9" in path.read_text()
    assert "line 8" in (tmp_path / "a.log.1").read_text()
    assert "line 7" in (tmp_path / "a.log.2").read_text()
    assert all(p.stat().st_size <= 100 for p in tmp_path.iterdir())
