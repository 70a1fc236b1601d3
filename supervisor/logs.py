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
from collections.abc import Iterable, Iterator
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


def read_lines(logs_dir: Path, instance: str, tail: int | None) -> list[Line]:
    """An instance's lines, oldest first, rotated copies included.

    With `tail`, only the last `tail` lines (0 gives none).
    """
    kept: collections.deque[Line] = collections.deque(maxlen=tail)
    previous = ""
    for path in _rotated_oldest_first(logs_dir, instance):
        for raw in _text_lines(path):
            line = parse(instance, raw, previous)
            previous = line.stamp
            kept.append(line)
    return list(kept)


def merged(logs_dir: Path, instances: Iterable[str], tail: int | None) -> list[Line]:
    """The lines of several instances merged by time (stable per instance)."""
    per_instance = [read_lines(logs_dir, name, tail) for name in instances]
    return list(heapq.merge(*per_instance, key=lambda line: line.stamp))


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
    for line in merged(logs_dir, names, tail):
        out.line(line.instance, line.text)

    if follow:
        _Follower(logs_dir, instances, out).run(stop or threading.Event())


class _Follower:
    """Reads what is appended to the log files, across rotations."""

    def __init__(self, logs_dir: Path, instances: list[str] | None, out: Printer):
        self._dir = logs_dir
        self._fixed = instances
        self._out = out
        self._open: dict[str, tuple[BinaryIO, bytes]] = {}
        for name in self._names():
            self._track(name, at_end=True)

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

    def _track(self, name: str, at_end: bool) -> None:
        try:
            handle = (self._dir / f"{name}.log").open("rb")
        except FileNotFoundError:
            return
        if at_end:
            handle.seek(0, os.SEEK_END)
        self._open[name] = (handle, b"")

    def _read_new(self) -> None:
        fresh: list[Line] = []
        for name in self._names():
            if name not in self._open:
                self._track(name, at_end=False)
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
            self._track(name, at_end=False)
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


def _rotated_oldest_first(logs_dir: Path, instance: str) -> list[Path]:
    current = logs_dir / f"{instance}.log"
    backups = sorted(
        (p for p in logs_dir.glob(f"{instance}.log.*") if p.suffix[1:].isdigit()),
        key=lambda p: int(p.suffix[1:]),
        reverse=True,
    )
    return [*backups, current] if current.exists() else backups


def _text_lines(path: Path) -> Iterator[str]:
    try:
        with path.open("r", encoding="utf-8", errors="replace", newline="\n") as f:
            for raw in f:
                yield raw.rstrip("\n")
    except FileNotFoundError:
        log.debug("log file %s went away while reading", path)
