"""Children's output: the live prefixed printer and the rotating log files.

Each instance's pipe is read as bytes by its own thread, so a child that
writes a line of megabytes or bytes that are not UTF-8 delays nobody else.
A displayed line is cut at `DISPLAY_LIMIT`; the log file gets all of it.

Log files hold one line per output line, `<UTC ISO time> <text>`, with a
fixed-width time so that `corral logs` can merge files by sorting.

`corral up` never waits for its terminal: a paused pager or a FIFO nobody
reads blocks every write, so the live printer and corral's own log messages
go through a `StreamWriter`, which queues up to a bound, drops beyond it
and says how much it dropped once the stream takes text again. The log
files, written by the reader threads, still get every line.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import select
import sys
import threading
import time
import zlib
from collections import deque
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

#: A line without a newline is shown once the pipe has been quiet this long
#: (seconds): a prompt or progress dots appear live, while a line written in
#: two quick pieces (an unbuffered Python print) stays whole.
QUIET = 0.2

#: Characters waiting for a stream that does not keep up; lines beyond this
#: are dropped (and counted) instead of making anyone wait.
QUEUE_LIMIT = 1024 * 1024

#: Closing waits at most this long (seconds) for a stream that takes nothing.
CLOSE_WAIT = 1.0

#: A log message waits at most this long (seconds) to be written, so that
#: messages and the CLI's last error line keep their order on a working
#: stream; once a stream is stalled, messages do not wait at all.
LOG_WAIT = 0.1

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


def reader_gone(stream: TextIO) -> bool:
    """Whether `stream` is a pipe whose reader has closed it (POSIX).

    A command that follows something forever (`logs --follow`, `registry
    watch`) asks this while idle, so that `| head` ends it without waiting
    for the next line to fail.
    """
    if sys.platform == "win32":
        return False
    try:
        poller = select.poll()
        poller.register(stream.fileno(), select.POLLERR)
        return any(event & select.POLLERR for _fd, event in poller.poll(0))
    except (OSError, ValueError):
        return False


class Printer:
    """Writes `api-1 | line` to a stream, one whole line at a time.

    Each write waits for the stream, which suits `corral logs` (a pager
    should hold it up); `corral up` uses `LivePrinter`. Colour is used only
    when the stream is a terminal (or `colour` says so).
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
        self._emit(name, f"{prefix}{cut(text)}\n")

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """Nothing to wait for: every line was written when printed."""

    def _emit(self, name: str, data: str) -> None:
        with self._lock:
            try:
                self._stream.write(data)
                self._stream.flush()
            except (OSError, ValueError) as exc:
                # A closed or broken stdout must not stop supervision.
                log.debug("cannot print output of %s: %s", name, exc)


class LivePrinter(Printer):
    """A `Printer` that never blocks: lines go to a `StreamWriter`.

    Used by `corral up`, whose reader threads must keep reading (and the
    log files keep growing) whatever the terminal does.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        colour: bool | None = None,
        limit: int = QUEUE_LIMIT,
    ):
        super().__init__(stream, colour)
        self._writer = StreamWriter(self._stream, _lines_not_shown, limit)

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """Write what is queued, waiting while the stream takes text but at
        most `timeout` s without progress; later lines are dropped."""
        self._writer.close(timeout)

    def _emit(self, name: str, data: str) -> None:
        self._writer.put(data)


class LogHandler(logging.Handler):
    """A logging handler for corral's own messages that never blocks.

    Each message waits up to `LOG_WAIT` s to be written (so order with
    other writes to the stream holds), and not at all once the stream is
    stalled. `logging.shutdown` at exit flushes it with `CLOSE_WAIT`.
    """

    def __init__(self, stream: TextIO | None = None, wait: float = LOG_WAIT):
        super().__init__()
        self._writer = StreamWriter(stream or sys.stderr, _messages_not_shown)
        self._wait = wait

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the formatted message; wait briefly for a working stream."""
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return

        self._writer.put(f"{text}\n")
        if not self._writer.stalled:
            self._writer.drain(self._wait)

    def flush(self) -> None:
        """Wait for the queued messages, at most `CLOSE_WAIT` s without
        progress."""
        self._writer.drain(CLOSE_WAIT)

    def close(self) -> None:
        """Stop taking messages (after a flush, as `logging.shutdown` does)."""
        self._writer.close(0)
        super().close()


def _lines_not_shown(count: int) -> str:
    return (
        f"[corral: {count} lines not shown; the terminal is not reading"
        " \u2014 see .corral/logs]\n"
    )


def _messages_not_shown(count: int) -> str:
    return f"[corral: {count} messages not shown; the terminal is not reading]\n"


class StreamWriter:
    """Writes text to a stream from one thread of its own; `put` never waits.

    Text is queued up to `limit` characters. What does not fit is dropped
    and counted, and `marker(count)` is written in its place as soon as the
    queue has room again (or is empty), so a reader sees where the gap is.

    Real files are written with `os.write` on their descriptor: the thread
    then holds no lock of the stream object while blocked, which would stop
    the interpreter from exiting (it flushes sys.stdout at exit).
    """

    def __init__(
        self,
        stream: TextIO,
        marker: Callable[[int], str],
        limit: int = QUEUE_LIMIT,
    ):
        self._stream = stream
        self._fd = _raw_fd(stream)
        self._marker = marker
        self._limit = limit
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._size = 0
        self._dropped = 0
        self._busy = False
        self._writes = 0
        self._closed = False
        self._broken = False
        self._thread: threading.Thread | None = None
        self.stalled = False

    def put(self, text: str) -> None:
        """Queue `text` (whole lines), or count it as dropped if full."""
        with self._cond:
            if self._closed or self._broken:
                return
            if self._size and self._size + len(text) > self._limit:
                self._dropped += 1
                return

            if self._dropped:
                self._queue.append(self._marker(self._dropped))
                self._dropped = 0
            self._queue.append(text)
            self._size += len(text)
            self._start()
            self._cond.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until everything queued is written; True if it was.

        Gives up once `timeout` s pass without a completed write, and then
        marks the writer `stalled` until the stream takes text again.
        """
        with self._cond:
            deadline = time.monotonic() + timeout
            while not self._idle():
                writes = self._writes
                left = deadline - time.monotonic()
                if left <= 0:
                    self.stalled = True
                    return False
                self._cond.wait(left)
                if self._writes != writes:
                    deadline = time.monotonic() + timeout
            return True

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """Drain (see `drain`), then end the thread; later text is dropped."""
        self.drain(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _idle(self) -> bool:
        if self._broken:
            return True
        return not (self._queue or self._busy or self._dropped)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="corral-output", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while (batch := self._next()) is not None:
            written = self._write(batch)

            with self._cond:
                self._busy = False
                self._writes += 1
                self.stalled = False
                self._broken = not written
                if self._broken:
                    self._queue.clear()
                self._cond.notify_all()
            if not written:
                return

    def _next(self) -> str | None:
        """All queued text at once (a marker when only drops are left);
        None once closed and empty."""
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._dropped or self._closed)
            if not self._queue and self._dropped:
                self._queue.append(self._marker(self._dropped))
                self._dropped = 0
            if not self._queue:
                return None

            batch = "".join(self._queue)
            self._queue.clear()
            self._size = 0
            self._busy = True
            return batch

    def _write(self, text: str) -> bool:
        """Write `text`, blocking as long as the stream does; False once
        the stream is closed or broken (later text is discarded)."""
        try:
            if self._fd is None:
                self._stream.write(text)
                self._stream.flush()
            else:
                _write_fd(self._fd, text, self._stream)
        except (OSError, ValueError):
            return False
        return True


def _raw_fd(stream: TextIO) -> int | None:
    """The descriptor to write `stream` through, or None to use the object.

    A Windows console is written through the object, which turns the text
    into the console's wide characters.
    """
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None
    if sys.platform == "win32" and stream.isatty():
        return None
    return fd


def _write_fd(fd: int, text: str, stream: TextIO) -> None:
    """Write all of `text` to `fd` in the stream's encoding."""
    if sys.platform == "win32":
        text = text.replace("\n", "\r\n")
    data = memoryview(text.encode(stream.encoding or "utf-8", errors="replace"))

    while data:
        try:
            data = data[os.write(fd, data) :]
        except BlockingIOError:
            # Someone (a child sharing the terminal) made it non-blocking.
            time.sleep(0.05)


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

    An empty chunk means the pipe went quiet: a partial line pending then
    comes out as it is, and a newline that follows at once only ends it.
    A line longer than `limit` bytes comes out in pieces of `limit` bytes;
    a last line without a newline comes out at the end.
    """
    pending = bytearray()
    shown = False
    for chunk in chunks:
        if not chunk:
            if pending:
                yield bytes(pending)
                pending.clear()
                shown = True
            continue
        if shown and not pending and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        shown = False

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


def read_chunks(fd: int, quiet: float = QUIET) -> Iterator[bytes]:
    """Chunks read from a file descriptor until end of file.

    After a chunk that ends inside a line, an empty chunk is yielded once
    the descriptor has had nothing to read for `quiet` s (see
    `split_lines`). Otherwise reads block, so an idle child costs nothing.
    """
    partial = False
    while True:
        if partial and _quiet_for(fd, quiet):
            partial = False
            yield b""
        try:
            chunk = os.read(fd, CHUNK)
        except OSError as exc:
            log.debug("reading fd %s failed: %s", fd, exc)
            return
        if not chunk:
            return
        partial = not chunk.endswith(b"\n")
        yield chunk


if sys.platform == "win32":

    def _quiet_for(fd: int, seconds: float) -> bool:
        """Never: Windows pipes cannot be polled, so a partial line waits
        for its newline (or the end of the output)."""
        return False

else:

    def _quiet_for(fd: int, seconds: float) -> bool:
        """Whether `fd` has nothing to read (nor an end) for `seconds`."""
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return not poller.poll(seconds * 1000)


def pump(stream: IO[bytes], on_line: Callable[[str], None]) -> None:
    """Read `stream` to its end, calling `on_line` with each decoded line.

    Invalid UTF-8 becomes U+FFFD; a trailing carriage return is dropped.
    """
    with contextlib.closing(stream):
        for raw in split_lines(read_chunks(stream.fileno())):
            text = raw.decode("utf-8", errors="replace").removesuffix("\r")
            on_line(text)
