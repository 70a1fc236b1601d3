"""The interface every registry backend offers, and open_registry."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from registry.instance import ServiceInstance

if TYPE_CHECKING:
    from registry.watch import Lease, Watcher


class Registry(abc.ABC):
    """A service registry: where the ready instances of each service listen.

    Every backend keeps the same guarantees: no lost update between writers,
    readers never see a partial state, and watchers yield only real changes
    of the watched service.
    """

    #: The location this registry was opened from (a path or a URL).
    location: str

    @abc.abstractmethod
    def register(self, instance: ServiceInstance, ttl: float | None = None) -> None:
        """Insert or replace the instance by (name, id).

        With `ttl` (seconds) the record is a lease, pruned unless renewed
        within that time. With `instance.pid` set, `pid_started` and `host`
        are filled in so the record dies with that process.
        """

    @abc.abstractmethod
    def renew(self, instance: ServiceInstance) -> None:
        """Renew the lease and re-assert the whole record."""

    @abc.abstractmethod
    def deregister(self, instance: ServiceInstance) -> None:
        """Remove the instance by (name, id); an absent one is not an error."""

    @abc.abstractmethod
    def get_service(self, name: str) -> list[ServiceInstance]:
        """The registered instances of one service (empty if none)."""

    @abc.abstractmethod
    def list_services(self) -> dict[str, list[ServiceInstance]]:
        """Every service with at least one instance."""

    @abc.abstractmethod
    def prune(self) -> list[ServiceInstance]:
        """Remove stale instances (dead owner or expired lease); return them."""

    @abc.abstractmethod
    def watch(self, name: str) -> Watcher:
        """A watcher whose first next() returns the current instances."""

    @abc.abstractmethod
    def lease(self, instance: ServiceInstance, ttl: float) -> Lease:
        """Register now, renew in the background, deregister on exit."""

    async def awatch(self, name: str) -> AsyncIterator[list[ServiceInstance]]:
        """Async form of watch(): yields the instances each time they change."""
        raise NotImplementedError  # pragma: no cover - every backend overrides

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds (connections, threads)."""


def open_registry(location: str) -> Registry:
    """Open the registry at a plain path, a file:// URL or an etcd:// URL."""
    raise NotImplementedError  # replaced by the registry implementation
