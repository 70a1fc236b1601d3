"""Watchers of one service's instances, and leases renewed in the background.

A Watcher works on any backend through a small ChangeSource: something
that can fetch the current instances and that calls a function whenever
they may have changed. The Watcher does the comparing, so a source may
call too often, never too rarely.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from registry.errors import RegistryCorrupt, RegistryError, WatcherStopped
from registry.instance import ServiceInstance, same_instances

if TYPE_CHECKING:
    from registry.backend import Registry

log = logging.getLogger(__name__)


class ChangeSource(Protocol):
    """What a backend gives a Watcher.

    `start(notify)` begins watching and calls `notify()` (from any thread)
    each time the instances may have changed, including once as soon as the
    source really listens, so a change made while it started is not missed.
    `fetch()` returns the watched service's current instances. `close()`
    stops watching; it must not block for long.
    """

    def start(self, notify: Callable[[], None]) -> None: ...

    def fetch(self) -> list[ServiceInstance]: ...

    def close(self) -> None: ...


class Watcher:
    """Follows the instances of one service and yields them when they change.

    The first next() returns the current instances; each later call blocks
    until the set of instances differs from what was last returned (order,
    timestamps and heartbeats do not count). Use it as an iterator or a
    context manager; stop() ends it, also from another thread.
    """

    def __init__(self, service: str, source: ChangeSource):
        self.service = service
        self._source = source
        self._wake = threading.Event()
        self._stopped = False
        self._last: list[ServiceInstance] | None = None
        source.start(self._wake.set)

    def next(self, timeout: float | None = None) -> list[ServiceInstance] | None:
        """The instances, once they differ from the last call's.

        `timeout` is in seconds; None waits as long as it takes. Returns None
        when the timeout passes with no change. Raises WatcherStopped once
        stop() was called, at once also in a thread already waiting here.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._check_running()
            if self._last is not None and not self._wait(deadline):
                return None
            self._check_running()

            # Clear before fetching, so that a change landing during the
            # fetch sets the event again and is looked at next round.
            self._wake.clear()
            current = self._fetch()
            if current is None:
                continue
            if self._last is None or not same_instances(current, self._last):
                self._last = current
                return list(current)

    def stop(self) -> None:
        """End the watcher; next() raises WatcherStopped from now on."""
        if self._stopped:
            return
        self._stopped = True
        self._wake.set()
        self._source.close()
        log.debug("watcher of %s stopped", self.service)

    @property
    def stopped(self) -> bool:
        """Whether stop() was called."""
        return self._stopped

    def __iter__(self) -> Iterator[list[ServiceInstance]]:
        """Yield each change until the watcher is stopped."""
        while True:
            try:
                instances = self.next()
            except WatcherStopped:
                return
            if instances is not None:
                yield instances

    def __enter__(self) -> Watcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _check_running(self) -> None:
        if self._stopped:
            raise WatcherStopped(self.service)

    def _wait(self, deadline: float | None) -> bool:
        if deadline is None:
            return self._wake.wait()
        return self._wake.wait(max(0.0, deadline - time.monotonic()))

    def _fetch(self) -> list[ServiceInstance] | None:
        try:
            return self._source.fetch()
        except RegistryCorrupt as exc:
            # A writer that rewrites in place can be caught half-way; its
            # finishing write wakes us again. Only a first read must succeed.
            if self._last is None:
                raise
            log.debug("watcher of %s skipped unreadable state: %s", self.service, exc)
            return None


async def watch_async(watcher: Watcher) -> AsyncIterator[list[ServiceInstance]]:
    """Yield the watcher's changes in an event loop; stop it when done.

    Each wait runs in a worker thread. Leaving the loop (break, cancel)
    stops the watcher, which also frees the thread at once.
    """
    try:
        while True:
            try:
                instances = await asyncio.to_thread(watcher.next)
            except WatcherStopped:
                return
            if instances is not None:
                yield instances
    finally:
        watcher.stop()


class Lease:
    """A registration kept alive by renewing it in a background thread.

    Made by Registry.lease(): the instance is registered with the ttl at
    once, renewed every third of the ttl, and deregistered by close() or at
    the end of a `with` block.
    """

    def __init__(self, registry: Registry, instance: ServiceInstance, ttl: float):
        if ttl <= 0:
            raise ValueError(f"lease ttl must be positive, not {ttl!r}")
        self.registry = registry
        self.instance = instance
        self.ttl = ttl
        self._closed = threading.Event()

        registry.register(instance, ttl=ttl)
        self._thread = threading.Thread(
            target=self._renew_loop, name=f"lease-{instance.id}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop renewing and deregister the instance."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self.registry.deregister(self.instance)

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _renew_loop(self) -> None:
        interval = max(self.ttl / 3, 0.05)
        while not self._closed.wait(interval):
            try:
                self.registry.renew(self.instance)
            except RegistryError as exc:
                # Keep trying: the lease survives a registry that is briefly
                # locked or unreadable if a later renewal gets through.
                log.warning("renewal of %s failed: %s", self.instance.id, exc)
