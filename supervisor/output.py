"""Children's output: the live prefixed printer and the rotating log files.

Each instance's pipe is read as bytes by its own thread, so a child that
writes a line of megabytes or bytes that are not UTF-8 delays nobody else.
A displayed line is cut at `DISPLAY_LIMIT`; the log file gets all of it.

Log files hold one line per output line, `<UTC ISO time> <text>`, with a
fixed-width time so that `corral logs` can merge files by sorting.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, BinaryIO, TextIO

log = logging.getLogger(__name__)

#: A displayed line longer than this many characters is cut with a marker.
DISPLAY_LIMIT = 64 * 1024

#: A line without a newline is handed on in pieces of at most this size,
#: so that memory stays bounded whatever a child writes.
LINE_LIMIT = 16 * 1024 * 1024

#: Bytes read from a pipe at a time.
CHUNK = 64 * 1024

#: Log rotation: the size at which a file is rotated, and the copies kept.
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 3

_COLOURS = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94, 31, 91)


def timestamp(now: datetime.datetime | None = None) -> str:
    """A UTC time such as `2026-01-31T12:00:00.000000Z` (fixed width)."""
    moment = now or datetime.datetime.now(datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def colour_of(name: str) -> int:
    """The ANSI colour code of an instance: the same name, the same colour."""
    return _COLOURS[zlib.crc32(name.encode()) % len(_COLOURS)]


def cut(text: str, limit: int = DISPLAY_LIMIT) -> str:
    """`text`, or its first `limit` characters and a marker saying how much."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} [... {len(text) - limit} more characters in the log]"


class Printer:
    """Writes `api-1 | line` to a stream, one whole line at a time.

    Colour is used only when the stream is a terminal (or `colour` says so).
    """

    def __init__(self, stream: TextIO | None = None, colour: bool | None = None):
        self._stream = stream or sys.stdout
        self._colour = self._stream.isatty() if colour is None else colour
        self._lock = threading.Lock()
        self._width = 0

    def reserve(self, names: Iterable[str]) -> None:
        """Widen the prefix so these names line up."""
        self._width = max([self._width, *(len(n) for n in names)])

    def line(self, name: str, text: str) -> None:
        """Print one line of `name`'s output, cut to `DISPLAY_LIMIT`."""
        prefix = f"{name:<{self._width}} | "
        if self._colour:
            prefix = f"\x1b[{colour_of(name)}m{prefix}\x1b[0m"
        data = f"{prefix}{cut(text)}\n"
        with self._lock:
            try:
                self._stream.write(data)
                self._stream.flush()
            except (OSError, ValueError) as exc:
                # A closed or broken stdout must not stop supervision.
                log.debug("cannot print output of %s: %s", name, exc)


class RotatingLog:
    """An append-only log file (mode 0600) rotated by size.

    `<path>` is rotated to `<path>.1`, `.1` to `.2` and so on, keeping
    `backups` old files.
    """

    def __init__(
        self, path: Path, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS
    ):
        self.path = path
        self._max_bytes = max_bytes
        self._backups = backups
        self._lock = threading.Lock()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._file = self._open()
        self._size = self._file.seek(0, os.SEEK_END)

    def write(self, text: str, now: datetime.datetime | None = None) -> None:
        """Append one line with its time stamp."""
        data = f"{timestamp(now)} {text}\n".encode("utf-8", errors="replace")
        with self._lock:
            if self._file.closed:
                return
            if self._size and self._size + len(data) > self._max_bytes:
                self._rotate()
            self._file.write(data)
            self._file.flush()
            self._size += len(data)

    def close(self) -> None:
        """Close the file; later writes are dropped."""
        with self._lock:
            self._file.close()

    def _open(self) -> BinaryIO:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return os.fdopen(fd, "ab")

    def _rotate(self) -> None:
        self._file.close()
        for n in range(self._backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        if self._backups:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self._file = self._open()
        self._size = 0


def split_lines(chunks: Iterable[bytes], limit: int = LINE_LIMIT) -> Iterator[bytes]:
    """Lines (without their newline) from a stream of chunks.

    A line longer than `limit` bytes comes out in pieces of `limit` bytes;
    a last line without a newline comes out at the end.
    """
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        start = 0
        while True:
            end = pending.find(b"\n", start)
            if end < 0:
                break
            yield bytes(pending[start:end])
            start = end + 1
        del pending[:start]
        while len(pending) >= limit:
            yield bytes(pending[:limit])
            del pending[:limit]
    if pending:
        yield bytes(pending)


def read_chunks(fd: int) -> Iterator[bytes]:
    """Chunks read from a file descriptor until end of file."""
    while True:
        try:
            chunk = os.read(fd, CHUNK)
        except OSError as exc:
            log.debug("reading fd %s failed: %s", fd, exc)
            return
        if not chunk:
            return
        yield chunk


def pump(stream: IO[bytes], on_line: Callable[[str], None]) -> None:
    """Read `stream` to its end, calling `on_line` with each decoded line.

    Invalid UTF-8 becomes U+FFFD; a trailing carriage return is dropped.
    """
    with contextlib.closing(stream):
        for raw in split_lines(read_chunks(stream.fileno())):
            text = raw.decode("utf-8", errors="replace").removesuffix("\r")
            on_line(text)
