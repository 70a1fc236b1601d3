"""Output that nobody reads never holds up supervision.

A paused pager or a FIFO without a reader blocks every write to corral's
stdout and stderr. Children's lines and corral's own messages then queue up
to a bound and are dropped beyond it; supervision, the log files and a stop
go on as usual.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from supervisor.output import LivePrinter
from tests.support import corral_cmd, corral_env, wait_for

MARKER = re.compile(r"\[corral: (\d+) lines not shown; the terminal is not reading")


class _Drain:
    """Reads a pipe's read end in a thread, once told to start."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.data = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join(timeout=10)

    def text(self) -> str:
        with self._lock:
            return self.data.decode("utf-8", errors="replace")

    def _read(self) -> None:
        while chunk := os.read(self.fd, 65536):
            with self._lock:
                self.data += chunk


@pytest.fixture
def unread_pipe() -> Iterator[tuple[int, int]]:
    """A pipe whose read end is held open but not read (until a test says)."""
    read, write = os.pipe()
    yield read, write
    for fd in (read, write):
        with contextlib.suppress(OSError):
            os.close(fd)


def _registered_pid(folder: Path, instance: str) -> int | None:
    try:
        data = json.loads((folder / ".corral" / "registry.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    found = [i for group in data["services"].values() for i in group]
    return next((int(i["pid"]) for i in found if i["id"] == instance), None)


def _log_size(folder: Path, instance: str) -> int:
    path = folder / ".corral" / "logs" / f"{instance}.log"
    return path.stat().st_size if path.exists() else 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_supervision_goes_on_when_nobody_reads_the_output(
    tmp_path: Path, unread_pipe: tuple[int, int]
) -> None:
    read, write = unread_pipe
    (tmp_path / "corral.yaml").write_text(
        textwrap.dedent(
            """
            services:
              chatty: {command: sh -c "yes xxxxxxxxxxxxxxxxxxxxxxxx"}
              victim: {command: sleep 1000}
            """
        )
    )
    corral = subprocess.Popen(
        corral_cmd("up"),
        cwd=tmp_path,
        env=corral_env(),
        stdout=write,
        stderr=write,
        start_new_session=True,
    )
    os.close(write)
    try:
        _check_supervision_while_blocked(tmp_path, corral)
        drain = _Drain(read)
        drain.start()
        corral.send_signal(signal.SIGTERM)

        assert corral.wait(timeout=10) == 0
        wait_for(lambda: "stopping all services" in drain.text(), what="the log")
        assert MARKER.search(drain.text())
    finally:
        _end(corral)


def _check_supervision_while_blocked(
    folder: Path, corral: subprocess.Popen[bytes]
) -> None:
    """The pipe fills; then a killed child is restarted and logs still grow."""
    victim = wait_for(lambda: _registered_pid(folder, "victim-1"), what="victim")
    wait_for(lambda: _log_size(folder, "chatty-1") > 4_000_000, what="much output")

    os.kill(victim, signal.SIGKILL)
    restarted = wait_for(
        lambda: (_registered_pid(folder, "victim-1") or victim) != victim,
        timeout=10,
        what="the killed victim restarted",
    )
    assert restarted

    size = _log_size(folder, "chatty-1")
    wait_for(lambda: _log_size(folder, "chatty-1") > size, what="the log growing")
    assert corral.poll() is None


def _end(corral: subprocess.Popen[bytes]) -> None:
    """Kill what is left of this run after a failed check."""
    try:
        family = [
            psutil.Process(corral.pid),
            *psutil.Process(corral.pid).children(True),
        ]
    except psutil.NoSuchProcess:
        return
    for proc in family:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    corral.wait(timeout=10)


def test_printer_drops_lines_when_the_pipe_is_full_and_says_how_many(
    unread_pipe: tuple[int, int],
) -> None:
    read, write = unread_pipe
    printer = LivePrinter(os.fdopen(write, "w", closefd=False), colour=False)
    done = threading.Event()

    def flood() -> None:
        for n in range(20_000):
            printer.line("api-1", f"line {n} " + "x" * 100)
        done.set()

    threading.Thread(target=flood, daemon=True).start()
    assert done.wait(timeout=10), "printing blocked on a full pipe"

    drain = _Drain(read)
    drain.start()
    marker = wait_for(lambda: MARKER.search(drain.text()), what="the marker")
    printer.line("api-1", "after")
    printer.close()

    shown = [ln for ln in drain.text().splitlines() if ln.startswith("api-1 | line")]
    assert int(marker.group(1)) + len(shown) == 20_000
    wait_for(lambda: drain.text().endswith("api-1 | after\n"), what="later lines")


def test_printer_writes_everything_that_fits_before_close() -> None:
    read, write = os.pipe()
    drain = _Drain(read)
    drain.start()
    printer = LivePrinter(os.fdopen(write, "w", closefd=False), colour=False)

    for n in range(5_000):
        printer.line("a", f"{n}")
    printer.close()
    os.close(write)

    drain.join()
    assert drain.text().splitlines() == [f"a | {n}" for n in range(5_000)]


def test_close_gives_up_on_a_stream_that_takes_nothing(
    unread_pipe: tuple[int, int],
) -> None:
    _read, write = unread_pipe
    stream = os.fdopen(write, "w", closefd=False)
    printer = LivePrinter(stream, colour=False)

    for _ in range(2_000):
        printer.line("a", "y" * 100)
    closed = threading.Event()

    def close() -> None:
        printer.close()
        closed.set()

    threading.Thread(target=close, daemon=True).start()

    assert closed.wait(timeout=5), "close waited for a stream that takes nothing"
