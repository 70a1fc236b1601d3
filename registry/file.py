"""FileRegistry: the registry kept in one JSON file (Kratos local format)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from registry.backend import Registry
from registry.filestore import DEFAULT_LOCK_TIMEOUT, Document, FileStore
from registry.filewatch import DEFAULT_POLL_INTERVAL, EventSource, PollingSource
from registry.instance import ServiceInstance, this_host
from registry.liveness import is_stale, process_started
from registry.watch import ChangeSource, Lease, Watcher, watch_async

log = logging.getLogger(__name__)


class FileRegistry(Registry):
    """A registry in one JSON file that many processes share safely.

    The folder (0700) and the file (0600) are created when missing. Every
    change holds the file lock for a read-modify-write and replaces the file
    atomically; reads take no lock. `lock_timeout` is how many seconds a
    writer waits for the lock before RegistryUnavailable.
    """

    def __init__(
        self, path: str | os.PathLike[str], lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    ):
        self.path = Path(path).expanduser().absolute()
        self.location = str(path)
        self._store = FileStore(self.path, lock_timeout)
        self._store.ensure_exists()

    def register(self, instance: ServiceInstance, ttl: float | None = None) -> None:
        """Insert or replace the instance by (name, id); see Registry.register.

        The instance itself is filled in (timestamp, heartbeat, ttl, and for
        a pid its creation time and this host), so that renew() can assert
        the same record again.
        """
        now = time.time()
        if ttl is not None:
            instance.ttl = ttl
        _stamp(instance, now)
        instance.timestamp = int(now)

        with self._store.update() as document:
            document.put(_copy(instance))
        log.debug("registered %s/%s in %s", instance.name, instance.id, self.path)

    def renew(self, instance: ServiceInstance) -> None:
        """Renew the lease and write the whole record again.

        The record is re-inserted if it went missing, and fields that another
        writer dropped (pid, ttl, heartbeat...) come back from `instance`.
        A record without a lease that is stored exactly as asserted is left
        as it is: its heartbeat decides nothing, and rewriting it would wake
        every watcher of the folder for no change.
        """
        now = time.time()
        current = self._store.read_shared()
        if instance.ttl is None and _unchanged(current, instance, now):
            return

        with self._store.update() as document:
            stored = document.find(instance.name, instance.id)
            _inherit(instance, stored)
            _stamp(instance, now)
            document.put(_copy(instance))

    def deregister(self, instance: ServiceInstance) -> None:
        """Remove the instance by (name, id); an absent one is not an error."""
        with self._store.update() as document:
            removed = document.remove(instance.name, instance.id)
        if removed is not None:
            log.debug("deregistered %s/%s", instance.name, instance.id)

    def get_service(self, name: str) -> list[ServiceInstance]:
        """The registered instances of one service (empty if none)."""
        return list(self._store.read().services.get(name, []))

    def list_services(self) -> dict[str, list[ServiceInstance]]:
        """Every service with at least one instance."""
        services = self._store.read().services
        return {name: list(entries) for name, entries in services.items() if entries}

    def prune(self) -> list[ServiceInstance]:
        """Remove instances whose owner process is gone or whose lease lapsed."""
        if not any(is_stale(i) for i in self._store.read_shared().instances()):
            return []

        with self._store.update() as document:
            removed = _remove_stale(document)
        for instance in removed:
            log.debug("pruned stale instance %s/%s", instance.name, instance.id)
        return removed

    def watch(
        self,
        name: str,
        *,
        polling: bool = False,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> Watcher:
        """A watcher of one service, woken by file-system events.

        With `polling` it looks at the file every `poll_interval` seconds
        instead, for file systems that report no events (network shares).
        It falls back to polling by itself when events cannot be set up.
        """
        source: ChangeSource
        if polling:
            source = PollingSource(self._store, name, poll_interval)
        else:
            source = EventSource(self._store, name, poll_interval)
        return Watcher(name, source)

    async def awatch(self, name: str) -> AsyncIterator[list[ServiceInstance]]:
        """Yield the instances of `name` now and each time they change."""
        async for instances in watch_async(self.watch(name)):
            yield instances

    def lease(self, instance: ServiceInstance, ttl: float) -> Lease:
        """Register with `ttl` now, renew in the background, deregister on exit."""
        return Lease(self, instance, ttl)

    def __repr__(self) -> str:
        return f"FileRegistry({str(self.path)!r})"


def _stamp(instance: ServiceInstance, now: float) -> None:
    instance.heartbeat = now
    if not instance.timestamp:
        instance.timestamp = int(now)
    if instance.pid is not None:
        instance.host = instance.host or this_host()
        if instance.pid_started is None:
            instance.pid_started = process_started(instance.pid)


def _inherit(instance: ServiceInstance, stored: ServiceInstance | None) -> None:
    # What the caller's copy lacks (it may be a fresh object built from the
    # same config) is taken from the stored record.
    if stored is None:
        return
    if instance.ttl is None:
        instance.ttl = stored.ttl
    if instance.pid is not None and instance.pid == stored.pid:
        instance.pid_started = instance.pid_started or stored.pid_started
        instance.host = instance.host or stored.host
    if not instance.timestamp:
        instance.timestamp = stored.timestamp


def _unchanged(document: Document, instance: ServiceInstance, now: float) -> bool:
    stored = document.find(instance.name, instance.id)
    if stored is None:
        return False

    wanted = _copy(instance)
    _inherit(wanted, stored)
    _stamp(wanted, now)
    return _without_heartbeat(wanted) == _without_heartbeat(stored)


def _without_heartbeat(instance: ServiceInstance) -> dict[str, object]:
    data = instance.to_dict()
    data.pop("heartbeat", None)
    return data


def _copy(instance: ServiceInstance) -> ServiceInstance:
    return ServiceInstance.from_dict(instance.to_dict())


def _remove_stale(document: Document) -> list[ServiceInstance]:
    now = time.time()
    removed = []
    for instance in document.instances():
        if is_stale(instance, now):
            document.remove(instance.name, instance.id)
            removed.append(instance)
    return removed
