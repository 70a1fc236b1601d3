"""The interface every registry backend offers, and open_registry."""

from __future__ import annotations

import abc
import importlib
import os
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from registry.errors import RegistryLocationError
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
        from registry.watch import watch_async

        async for instances in watch_async(self.watch(name)):
            yield instances

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds (connections, threads)."""


def open_registry(location: str | os.PathLike[str]) -> Registry:
    """Open the registry at a plain path, a file:// URL or an etcd:// URL.

    Raises RegistryLocationError for an empty location or another scheme.
    """
    text = os.fspath(location)
    if not text.strip():
        raise RegistryLocationError(text, "empty registry location")
    scheme = _scheme(text)

    if scheme == "":
        from registry.file import FileRegistry

        return FileRegistry(text)
    if scheme == "file":
        from registry.file import FileRegistry

        return FileRegistry(_file_url_path(text))
    if scheme == "etcd":
        return _open_etcd(text)
    raise RegistryLocationError(
        text, f"unsupported scheme {scheme!r} (use a path, file:// or etcd://)"
    )


def _open_etcd(location: str) -> Registry:
    # Imported only when asked for, so the file backend needs no etcd client.
    try:
        module = importlib.import_module("registry.etcd")
    except ImportError as exc:
        raise RegistryLocationError(
            location,
            f"the etcd backend cannot be loaded ({exc}); "
            "install it with: pip install 'corral[etcd]'",
        ) from exc
    registry: Registry = module.EtcdRegistry(location)
    return registry


def _scheme(location: str) -> str:
    # A Windows drive ("C:\\x" or "C:/x") parses as a one-letter scheme.
    if "://" not in location:
        return ""
    scheme = urllib.parse.urlsplit(location).scheme.lower()
    return "" if len(scheme) == 1 else scheme


def _file_url_path(location: str) -> str:
    parts = urllib.parse.urlsplit(location)
    if parts.netloc not in ("", "localhost"):
        raise RegistryLocationError(
            location, f"file URL names host {parts.netloc!r}; only local files work"
        )
    path = urllib.request.url2pathname(urllib.parse.unquote(parts.path))
    if not path:
        raise RegistryLocationError(location, "file URL has no path")
    return path
