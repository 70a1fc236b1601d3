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
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import watchfiles

from supervisor.output import Printer, reader_gone

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
    logs_dir: Path, instance: str, tail: int | None, follower: _Follower | None = None
) -> list[Line]:
    """An instance's lines, oldest first, rotated copies included.

    With `tail`, only the last `tail` lines (0 gives none). With a
    `follower`, it is told how far the current file was read, so that it
    goes on exactly there.
    """
    kept: collections.deque[Line] = collections.deque(maxlen=tail)
    previous = ""
    for raw in _all_lines(logs_dir, instance, follower):
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

    per_instance = [read_lines(logs_dir, n, tail, follower) for n in names]
    for line in heapq.merge(*per_instance, key=lambda line: line.stamp):
        out.line(line.instance, line.text)

    if follower is not None:
        follower.run(stop or threading.Event())


@dataclass
class _Position:
    """How far a follower has read one file: which file (by inode, so a
    rotation shows), the byte offset, and a partial last line."""

    inode: int
    offset: int
    rest: bytes = b""


class _Follower:
    """Reads what is appended to the log files, across rotations.

    Files are opened only for each read, never held: on Windows an open
    file could not be renamed by the supervisor's rotation.
    """

    def __init__(self, logs_dir: Path, instances: list[str] | None, out: Printer):
        self._dir = logs_dir
        self._fixed = instances
        self._out = out
        self._at: dict[str, _Position] = {}

    def read_current(self, name: str) -> bytes:
        """The whole lines of an instance's current file; remember the end."""
        data, inode = _read_from(self._dir / f"{name}.log", 0)
        if inode is None:
            return b""
        whole = data[: data.rfind(b"\n") + 1]
        self._at[name] = _Position(inode, len(whole))
        return whole

    def run(self, stop: threading.Event) -> None:
        """Print new lines until `stop` is set."""
        self._dir.mkdir(parents=True, exist_ok=True)
        for _changes in watchfiles.watch(
            self._dir,
            stop_event=stop,
            yield_on_timeout=True,
            rust_timeout=_FOLLOW_WAKE_MS,
        ):
            self._read_new()
            if reader_gone(sys.stdout):
                return

    def _names(self) -> list[str]:
        return self._fixed if self._fixed is not None else instance_files(self._dir)

    def _read_new(self) -> None:
        fresh: list[Line] = []
        for name in self._names():
            if name not in self._at:
                self._out.reserve([name])
            fresh.extend(self._drain(name))
        for line in sorted(fresh, key=lambda line: line.stamp):
            self._out.line(line.instance, line.text)

    def _drain(self, name: str) -> list[Line]:
        """New whole lines of one instance, also across a rotation.

        After a rotation the rest of the old file (now `.1`) is read first,
        so nothing written just before it is lost.
        """
        current = self._dir / f"{name}.log"
        at = self._at.get(name) or _Position(_inode(current) or 0, 0)
        data = at.rest
        inode = _inode(current)
        if inode is not None and inode != at.inode:
            data += _rest_of_rotated(self._dir, name, at)
            at = _Position(inode, 0)

        chunk, read_inode = _read_from(current, at.offset)
        if read_inode == at.inode:
            data += chunk
            at.offset += len(chunk)
        *whole, at.rest = data.split(b"\n")
        self._at[name] = at

        lines: list[Line] = []
        previous = ""
        for raw in whole:
            line = parse(name, raw.decode("utf-8", errors="replace"), previous)
            previous = line.stamp
            lines.append(line)
        return lines


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _read_from(path: Path, offset: int) -> tuple[bytes, int | None]:
    """The bytes of `path` from `offset`, and the inode they came from."""
    try:
        with path.open("rb") as handle:
            inode = os.fstat(handle.fileno()).st_ino
            handle.seek(offset)
            return handle.read(), inode
    except FileNotFoundError:
        return b"", None


def _rest_of_rotated(logs_dir: Path, name: str, at: _Position) -> bytes:
    """What the file `at` points to got after `at.offset`, found by inode
    among the rotated copies (empty if it is gone already)."""
    for path in sorted(logs_dir.glob(f"{name}.log.*")):
        if _inode(path) == at.inode:
            return _read_from(path, at.offset)[0]
    return b""


def _all_lines(
    logs_dir: Path, instance: str, follower: _Follower | None
) -> Iterator[str]:
    """The text lines of the rotated copies (oldest first), then the current
    file (read through `follower` when given)."""
    backups = sorted(
        (p for p in logs_dir.glob(f"{instance}.log.*") if p.suffix[1:].isdigit()),
        key=lambda p: int(p.suffix[1:]),
        reverse=True,
    )
    for path in backups:
        yield from _text_lines(path)

    if follower is None:
        yield from _text_lines(logs_dir / f"{instance}.log")
        return
    data = follower.read_current(instance)
    yield from data.decode("utf-8", errors="replace").split("\n")[:-1]


def _text_lines(path: Path) -> Iterator[str]:
    try:
        with path.open("r", encoding="utf-8", errors="replace", newline="\n") as f:
            for raw in f:
                yield raw.rstrip("\n")
    except FileNotFoundError:
        log.debug("log file %s went away while reading", path)
