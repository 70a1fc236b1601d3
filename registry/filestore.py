"""The registry file on disk: its lock, its atomic write and its parsed form.

This is the one module of the file backend that knows about platforms:
file modes and folder fsync on POSIX, replace retries on Windows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import secrets
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import filelock

from registry.errors import (
    RegistryCorrupt,
    RegistryLocationError,
    RegistryUnavailable,
    RegistryWriteError,
)
from registry.instance import FieldError, ServiceInstance
from registry.jsonplace import locate

log = logging.getLogger(__name__)

FORMAT_VERSION = "1.0.0"

#: How long a writer waits for the lock before RegistryUnavailable (seconds).
DEFAULT_LOCK_TIMEOUT = 10.0

_TOP_FIELDS = frozenset({"services", "version", "updated"})
_POSIX = os.name == "posix"
_REPLACE_RETRIES = 10
_REPLACE_BACKOFF = 0.01

# One in-process lock per registry file, shared by every FileStore of that
# file: the file lock alone is per open file, and threads of one process must
# also take turns.
_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@dataclass
class Document:
    """The parsed registry file: instances by service, and fields kept as-is."""

    services: dict[str, list[ServiceInstance]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def put(self, instance: ServiceInstance) -> None:
        """Insert the instance, or replace the one with the same (name, id)."""
        entries = self.services.setdefault(instance.name, [])
        for index, entry in enumerate(entries):
            if entry.id == instance.id:
                entries[index] = instance
                return
        entries.append(instance)

    def find(self, name: str, ident: str) -> ServiceInstance | None:
        """The stored instance with this (name, id), if any."""
        for entry in self.services.get(name, []):
            if entry.id == ident:
                return entry
        return None

    def remove(self, name: str, ident: str) -> ServiceInstance | None:
        """Remove and return the instance with this (name, id), if any."""
        entries = self.services.get(name, [])
        for index, entry in enumerate(entries):
            if entry.id == ident:
                del entries[index]
                if not entries:
                    del self.services[name]
                return entry
        return None

    def instances(self) -> list[ServiceInstance]:
        """Every instance of every service."""
        return [i for entries in self.services.values() for i in entries]

    def to_json(self) -> str:
        """The file text: Kratos fields, then the unknown top-level fields.

        One instance per line: readable, and written by the C encoder (an
        indented dump runs in pure Python, many times slower on big files).
        """
        top: dict[str, Any] = {"version": FORMAT_VERSION, "updated": int(time.time())}
        for key, value in self.extra.items():
            top.setdefault(key, value)

        services = [
            f"    {json.dumps(name)}: [\n"
            + ",\n".join(
                f"      {json.dumps(i.to_dict(), allow_nan=False)}" for i in entries
            )
            + "\n    ]"
            for name, entries in self.services.items()
            if entries
        ]
        body = "{\n" + ",\n".join(services) + "\n  }" if services else "{}"
        fields = [f'  "services": {body}']
        fields += [
            f"  {json.dumps(k)}: {json.dumps(v, allow_nan=False)}"
            for k, v in top.items()
        ]
        return "{\n" + ",\n".join(fields) + "\n}\n"


def parse_document(text: str, path: str) -> Document:
    """Parse registry file text; raise RegistryCorrupt naming the place."""
    if not text.strip():
        return Document()
    try:
        data = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
        )
    except json.JSONDecodeError as exc:
        raise RegistryCorrupt(path, exc.msg, exc.lineno, exc.colno) from exc
    except RecursionError as exc:
        raise RegistryCorrupt(path, "nested too deeply to be a registry") from exc
    except ValueError as exc:  # from the hooks below
        raise RegistryCorrupt(path, str(exc)) from exc

    if not isinstance(data, dict):
        raise RegistryCorrupt(path, "the top level must be a JSON object")
    _check_version(data.get("version"), path)
    services = data.get("services")
    if services is None:  # Go writes a nil map as null
        services = {}
    if not isinstance(services, dict):
        line, column = locate(text, ["services"])
        raise RegistryCorrupt(path, "'services' must be an object", line, column)

    document = Document(extra={k: v for k, v in data.items() if k not in _TOP_FIELDS})
    for name, entries in services.items():
        try:
            document.services[name] = _parse_entries(name, entries)
        except _Misplaced as exc:
            line, column = locate(text, exc.where)
            raise RegistryCorrupt(path, exc.reason, line, column) from exc
    return document


class _Misplaced(ValueError):
    """A value of the wrong type, and the key path that leads to it."""

    def __init__(self, where: list[str | int], reason: str):
        self.where = where
        self.reason = reason
        super().__init__(reason)


def _refuse_constant(name: str) -> Any:
    # Python reads NaN and Infinity, but they are not JSON and the Go reader
    # rejects the whole file if corral writes one back.
    raise ValueError(f"{name} is not a JSON value")


def _bounded_int(digits: str) -> int:
    # Python refuses to convert integers past 4300 digits with a message
    # about its own limits; no registry field comes anywhere near that.
    if len(digits) > 30:
        raise ValueError(f"an integer of {len(digits)} digits is not a registry value")
    return int(digits)


def _finite_float(digits: str) -> float:
    # 1e999 parses as infinity, which no field may hold and which cannot
    # be written back as JSON.
    value = float(digits)
    if not math.isfinite(value):
        raise ValueError(f"the number {digits} is out of range")
    return value


def _check_version(version: Any, path: str) -> None:
    # Kratos writes "1.0.0"; any 1.x is read as this format, anything else is
    # a format this code does not know and must not rewrite.
    if version is None:
        return
    if not isinstance(version, str) or version.split(".")[0] != "1":
        raise RegistryCorrupt(path, f"unknown format version {version!r}")


def _parse_entries(name: str, entries: Any) -> list[ServiceInstance]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise _Misplaced(["services", name], f"services.{name} must be a list")

    parsed = []
    for index, entry in enumerate(entries):
        try:
            parsed.append(ServiceInstance.from_dict(entry))
        except (ValueError, TypeError) as exc:
            where: list[str | int] = ["services", name, index]
            if isinstance(exc, FieldError):
                where.append(exc.field)
            raise _Misplaced(where, f"services.{name}[{index}]: {exc}") from exc
    return parsed


class FileStore:
    """Locked, atomic access to one registry file.

    Every read-modify-write holds an in-process lock and then a file lock
    (flock on POSIX, LockFileEx on Windows) on `<file>.lock`. Both kinds of
    file lock belong to an open file and end with the process, so a crashed
    writer never leaves a lock behind.
    """

    def __init__(self, path: Path, lock_timeout: float = DEFAULT_LOCK_TIMEOUT):
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.lock_timeout = lock_timeout
        self._thread_lock = _thread_lock_for(path)
        # fallback_to_soft=False: a soft lock is a plain file that a crash
        # leaves behind; better to fail than to risk blocking forever.
        self._cache: tuple[tuple[int, int, int, int], Document] | None = None
        self._file_lock = filelock.FileLock(
            str(self.lock_path), fallback_to_soft=False, thread_local=False
        )

    def ensure_exists(self) -> None:
        """Create the folder (0700) and an empty registry file (0600).

        Also removes temporary files that a writer killed mid-write left:
        they are made only under the lock, so any found while holding it
        belongs to no live writer.
        """
        refuse_planted_links(self.path)
        ensure_folder(self.path.parent)
        with self.locked():
            _remove_stale_temps(self.path)
            if not self.path.exists():
                write_atomic(self.path, Document().to_json())
                log.debug("created registry %s", self.path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the in-process lock and the file lock, or RegistryUnavailable."""
        started = time.monotonic()
        if not self._thread_lock.acquire(timeout=self.lock_timeout):
            raise RegistryUnavailable(f"lock {self.lock_path}", self.lock_timeout)
        try:
            remaining = max(0.0, self.lock_timeout - (time.monotonic() - started))
            try:
                self._file_lock.acquire(timeout=remaining)
            except filelock.Timeout as exc:
                waited = time.monotonic() - started
                raise RegistryUnavailable(f"lock {self.lock_path}", waited) from exc
            except OSError as exc:
                raise RegistryWriteError(str(self.lock_path), str(exc)) from exc
            try:
                yield
            finally:
                self._file_lock.release()
        finally:
            self._thread_lock.release()

    @contextlib.contextmanager
    def update(self) -> Iterator[Document]:
        """Read the document under the lock; write it back if the block ends."""
        with self.locked():
            document = self.read_unlocked()
            yield document
            write_atomic(self.path, document.to_json())

    def read(self) -> Document:
        """The current document, read without the lock.

        Writers replace the file atomically, so an unlocked read sees either
        the old or the new file. A program that rewrites in place can still
        be caught mid-write: a corrupt read is then retried under the lock.
        """
        try:
            return self.read_unlocked()
        except RegistryCorrupt:
            with self.locked():
                return self.read_unlocked()

    def read_shared(self) -> Document:
        """The current document, parsed again only when the file changed.

        For checks that run every second (renewal, pruning) and only look:
        the returned document is shared between calls and must not be
        modified. A change is seen through the file's identity, size and
        change times, which every replace or in-place rewrite alters.
        """
        try:
            info = os.stat(self.path)
        except OSError:
            return self.read()
        key = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1]

        document = self.read()
        self._cache = (key, document)
        return document

    def read_unlocked(self) -> Document:
        """The current document (empty if the file does not exist)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return Document()
        except OSError as exc:
            raise RegistryCorrupt(str(self.path), f"cannot read: {exc}") from exc

        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RegistryCorrupt(str(self.path), f"not UTF-8: {exc}") from exc
        return parse_document(text, str(self.path))


def _thread_lock_for(path: Path) -> threading.Lock:
    key = os.path.normcase(os.path.realpath(path))
    with _thread_locks_guard:
        return _thread_locks.setdefault(key, threading.Lock())


def refuse_planted_links(path: Path) -> None:
    """Refuse a path that passes through a symlink owned by another user.

    In a folder others may write to (such as /tmp), someone could plant the
    registry's name, or a folder on its way, as a link to a file of theirs
    and so feed or capture every registration. Links owned by this user or
    by root are followed as usual.
    """
    if sys.platform == "win32":
        return
    me = os.geteuid()
    current = Path(path.anchor)
    for part in path.parts[1:]:
        current = current / part
        try:
            info = os.lstat(current)
        except OSError:
            return  # nothing further exists to be redirected
        if stat.S_ISLNK(info.st_mode) and info.st_uid not in (me, 0):
            raise RegistryLocationError(
                str(path),
                f"{current} is a symlink owned by uid {info.st_uid}, not by you;"
                " refusing to follow it (remove it or choose another path)",
            )


def _remove_stale_temps(path: Path) -> None:
    prefix, suffix = f".{path.name}.", ".tmp"
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            if entry.name.startswith(prefix) and entry.name.endswith(suffix):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                log.debug("removed %s left by a writer that died", entry.path)


def ensure_folder(folder: Path) -> None:
    """Create a missing folder with mode 0700; RegistryWriteError naming it."""
    if folder.is_dir():
        return
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if _POSIX:
            os.chmod(folder, 0o700)
    except OSError as exc:
        raise RegistryWriteError(str(folder), f"cannot create folder: {exc}") from exc


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so that no reader sees a partial file.

    The temporary file gets a random name in the same folder and is created
    with O_EXCL (and O_NOFOLLOW), so a file or symlink planted there cannot
    redirect the write. It is fsynced before the replace, and the folder
    after it, so a crash leaves the old or the new file, never a torn one.
    """
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        _write_new_file(temp, text.encode("utf-8"))
        _replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise RegistryWriteError(str(path), _describe(exc, path)) from exc
    _fsync_folder(path.parent)


def _write_new_file(temp: Path, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temp, flags, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(temp: Path, path: Path) -> None:
    if sys.platform != "win32":
        os.replace(temp, path)
        return

    # On Windows a replace fails while another process has the target open
    # (a reader between open and close); such holds are short, so retry.
    for attempt in range(_REPLACE_RETRIES):
        try:
            os.replace(temp, path)
            return
        except PermissionError:
            if attempt == _REPLACE_RETRIES - 1:
                raise
            log.debug("replace of %s met a reader; retrying", path)
            time.sleep(_REPLACE_BACKOFF * (attempt + 1))


def _fsync_folder(folder: Path) -> None:
    # The rename itself is durable only once the folder entry is flushed;
    # Windows has no way to open a folder for that, and needs none.
    if not _POSIX:
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        log.debug("cannot open %s to fsync it: %s", folder, exc)
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        log.debug("fsync of folder %s failed: %s", folder, exc)
    finally:
        os.close(fd)


def _describe(exc: OSError, path: Path) -> str:
    if isinstance(exc, PermissionError):
        return f"folder {path.parent} is not writable ({exc.strerror})"
    return exc.strerror or str(exc)
