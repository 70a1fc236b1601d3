"""`corral logs`: read the instances' log files, merge them in time order,
and optionally follow them as they grow.

Works from the files alone, so it answers whether or not a supervisor
runs. Each line of a log file starts with a fixed-width UTC time (see
`supervisor.output`), which is what the merge sorts on.
"""

from __future__ import annotations

import collections
import heapq
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import watchfiles

from supervisor.output import Printer

log = logging.getLogger(__name__)

#: The supervisor's own output when detached; not an instance's log.
SUPERVISOR_LOG = "corral.log"

# Width of `2026-01-31T12:00:00.000000Z`, the time at the start of a line.
_STAMP = 27

# How long a follow waits for a file-system event before looking anyway.
_FOLLOW_WAKE_MS = 1000


@dataclass(frozen=True, order=True)
class Line:
    """One line of an instance's log: its time stamp, instance and text."""

    stamp: str
    instance: str
    text: str


def parse(instance: str, raw: str, previous: str = "") -> Line:
    """Split a log line into time and text; an unstamped line keeps `previous`."""
    if len(raw) > _STAMP and raw[_STAMP] == " " and raw[_STAMP - 1] == "Z":
        return Line(raw[:_STAMP], instance, raw[_STAMP + 1 :])
    return Line(previous, instance, raw)


def instance_files(logs_dir: Path) -> list[str]:
    """The instance ids that have a log file, sorted."""
    if not logs_dir.is_dir():
        return []
    return sorted(
        p.name[: -len(".log")]
        for p in logs_dir.glob("*.log")
        if p.name != SUPERVISOR_LOG
    )


def read_lines(
    logs_dir: Path, instance: str, tail: int | None, current: BinaryIO | None = None
) -> list[Line]:
    """An instance's lines, oldest first, rotated copies included.

    With `tail`, only the last `tail` lines (0 gives none). `current`, an
    open handle on the instance's current file, is read to its end instead
    of the file by name, so that a follower goes on exactly where this
    stopped.
    """
    kept: collections.deque[Line] = collections.deque(maxlen=tail)
    previous = ""
    for raw in _all_lines(logs_dir, instance, current):
        line = parse(instance, raw, previous)
        previous = line.stamp
        kept.append(line)
    return list(kept)


def show(
    logs_dir: Path,
    instances: list[str] | None,
    tail: int | None,
    follow: bool,
    printer: Printer | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Print the merged lines, prefixed like `corral up`; then follow them.

    `instances` None means every instance with a log file (and, when
    following, any that appear later). `stop` ends a follow (tests, or a
    caller with its own shutdown); otherwise it runs until interrupted.
    """
    names = instances if instances is not None else instance_files(logs_dir)
    out = printer or Printer()
    out.reserve(names)
    follower = _Follower(logs_dir, instances, out) if follow else None

    per_instance = [
        read_lines(logs_dir, n, tail, follower.handle(n) if follower else None)
        for n in names
    ]
    for line in heapq.merge(*per_instance, key=lambda line: line.stamp):
        out.line(line.instance, line.text)

    if follower is not None:
        follower.run(stop or threading.Event())


class _Follower:
    """Reads what is appended to the log files, across rotations."""

    def __init__(self, logs_dir: Path, instances: list[str] | None, out: Printer):
        self._dir = logs_dir
        self._fixed = instances
        self._out = out
        self._open: dict[str, tuple[BinaryIO, bytes]] = {}
        for name in self._names():
            self._track(name)

    def handle(self, name: str) -> BinaryIO | None:
        """The open handle on an instance's current file, for the first read."""
        entry = self._open.get(name)
        return entry[0] if entry else None

    def run(self, stop: threading.Event) -> None:
        """Print new lines until `stop` is set."""
        self._dir.mkdir(parents=True, exist_ok=True)
        try:
            for _changes in watchfiles.watch(
                self._dir,
                stop_event=stop,
                yield_on_timeout=True,
                rust_timeout=_FOLLOW_WAKE_MS,
            ):
                self._read_new()
        finally:
            for handle, _rest in self._open.values():
                handle.close()

    def _names(self) -> list[str]:
        return self._fixed if self._fixed is not None else instance_files(self._dir)

    def _track(self, name: str) -> None:
        try:
            handle = (self._dir / f"{name}.log").open("rb")
        except FileNotFoundError:
            return
        self._open[name] = (handle, b"")

    def _read_new(self) -> None:
        fresh: list[Line] = []
        for name in self._names():
            if name not in self._open:
                self._track(name)
                self._out.reserve([name])
            if name in self._open:
                fresh.extend(self._drain(name))
        for line in sorted(fresh, key=lambda line: line.stamp):
            self._out.line(line.instance, line.text)

    def _drain(self, name: str) -> list[Line]:
        """New whole lines of one instance; reopens the file after a rotation.

        The open handle keeps reading the file it was opened on, now renamed
        to `.1`, so nothing written just before the rotation is lost.
        """
        handle, rest = self._open[name]
        # Look for a rotation before reading, so that whatever the old file
        # got until it was renamed is read before switching.
        rotated = _rotated(handle, self._dir / f"{name}.log")
        data = rest + handle.read()
        if rotated:
            handle.close()
            self._track(name)
            handle, _ = self._open[name]
            data += handle.read()

        *whole, rest = data.split(b"\n")
        self._open[name] = (handle, rest)
        lines: list[Line] = []
        previous = ""
        for raw in whole:
            line = parse(name, raw.decode("utf-8", errors="replace"), previous)
            previous = line.stamp
            lines.append(line)
        return lines


def _rotated(handle: BinaryIO, path: Path) -> bool:
    try:
        return os.fstat(handle.fileno()).st_ino != path.stat().st_ino
    except FileNotFoundError:
        return False


def _all_lines(
    logs_dir: Path, instance: str, current: BinaryIO | None
) -> Iterator[str]:
    """The text lines of the rotated copies (oldest first), then the current
    file (through `current` when given)."""
    backups = sorted(
        (p for p in logs_dir.glob(f"{instance}.log.*") if p.suffix[1:].isdigit()),
        key=lambda p: int(p.suffix[1:]),
        reverse=True,
    )
    for path in backups:
        yield from _text_lines(path)

    if current is None:
        yield from _text_lines(logs_dir / f"{instance}.log")
        return
    # Only whole lines: a partial last line is left for the follower.
    data = current.read()
    cut_at = data.rfind(b"\n") + 1
    current.seek(cut_at - len(data), os.SEEK_CUR)
    yield from data[:cut_at].decode("utf-8", errors="replace").split("\n")[:-1]


def _text_lines(path: Path) -> Iterator[str]:
    try:
        with path.open("r", encoding="utf-8", errors="replace", newline="\n") as f:
            for raw in f:
                yield raw.rstrip("\n")
    except FileNotFoundError:
        log.debug("log file %s went away while reading", path)
