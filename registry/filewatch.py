"""Change sources for watchers of a registry file: file-system events or polling.

Writers replace the registry file, which swaps its inode, so events are
taken from the file's folder and filtered to the file's name. Polling
compares the file's identity (inode, size, modification time) instead.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import watchfiles

from registry.filestore import FileStore
from registry.instance import ServiceInstance

log = logging.getLogger(__name__)

#: Default seconds between two looks at the file when polling.
DEFAULT_POLL_INTERVAL = 0.05

# watchfiles gathers events until none came for _STEP_MS (at most
# _DEBOUNCE_MS); small values keep the delay to a watcher short.
_STEP_MS = 5
_DEBOUNCE_MS = 50
# How often the event loop returns to Python with no event: the first such
# return proves the OS watch is in place.
_IDLE_MS = 200


class _FileSource:
    """Shared part of both sources: fetching the service from the file."""

    def __init__(self, store: FileStore, service: str):
        self.store = store
        self.service = service
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def fetch(self) -> list[ServiceInstance]:
        return list(self.store.read().services.get(self.service, []))

    def start(self, notify: Callable[[], None]) -> None:
        self._thread = threading.Thread(
            target=self._run,
            args=(notify,),
            name=f"registry-watch-{self.service}",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        self._closed.set()

    def _run(self, notify: Callable[[], None]) -> None:
        raise NotImplementedError  # pragma: no cover - both subclasses override


class PollingSource(_FileSource):
    """Looks at the file's identity every `interval` seconds."""

    def __init__(self, store: FileStore, service: str, interval: float):
        super().__init__(store, service)
        self.interval = interval

    def _run(self, notify: Callable[[], None]) -> None:
        poll(self.store.path, self.interval, self._closed, notify)


class EventSource(_FileSource):
    """Woken by watchfiles events on the file's folder; polls if it must."""

    def __init__(self, store: FileStore, service: str, poll_interval: float):
        super().__init__(store, service)
        self.poll_interval = poll_interval

    def _run(self, notify: Callable[[], None]) -> None:
        path = self.store.path
        try:
            self._follow_events(path, notify)
        except (OSError, RuntimeError) as exc:
            # No events on this file system (or no watches left): keep the
            # watcher working by polling instead.
            log.warning("no file events for %s (%s); polling instead", path, exc)
            notify()
            poll(path, self.poll_interval, self._closed, notify)

    def _follow_events(self, path: Path, notify: Callable[[], None]) -> None:
        name = path.name
        listening = False
        for changes in watchfiles.watch(
            path.parent,
            watch_filter=lambda _change, changed: Path(changed).name == name,
            debounce=_DEBOUNCE_MS,
            step=_STEP_MS,
            rust_timeout=_IDLE_MS,
            yield_on_timeout=True,
            stop_event=self._closed,
            recursive=False,
            raise_interrupt=False,
        ):
            # The first return (event or idle) means the OS watch is set up;
            # a change made before that is caught by the re-read it triggers.
            if changes or not listening:
                listening = True
                notify()


def poll(
    path: Path,
    interval: float,
    closed: threading.Event,
    notify: Callable[[], None],
) -> None:
    """Call `notify` whenever the file's identity changes, until `closed`."""
    seen = _identity(path)
    while not closed.wait(interval):
        current = _identity(path)
        if current != seen:
            seen = current
            notify()


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
