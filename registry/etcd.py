"""EtcdRegistry: the registry kept in etcd v3, in Kratos's own layout.

`open_registry("etcd://HOST:PORT/PREFIX")` opens it; PREFIX is the
namespace and defaults to `/microservices`, as in Kratos. Each instance is
one key, `<namespace>/<service name>/<instance id>`, whose value is the
instance as a JSON object with Kratos's fields (`id`, `name`, `version`,
`metadata`, `endpoints`) plus corral's optional ones, which Go's JSON
decoder ignores. So Go Kratos services on the same etcd discover corral's
instances, and corral reads theirs.

Every instance this process registers lives under its own etcd lease
(registry.etcd_keepalive), so a registrant that dies disappears from etcd
when its lease runs out, without anyone pruning:

- without `ttl` the lease is 15 s (Kratos's default) and a background
  thread keeps it alive for as long as the instance stays registered,
  retrying with backoff through outages and re-registering if it was lost;
- with `ttl` the contract holds as on the file backend: the record lasts
  while it is renewed (renew(), or lease() which renews in the
  background). etcd's lease is `ttl` rounded up to whole seconds, at
  least 2; prune() in the registering process removes it on time.

close() ends this registry's leases, so its instances go at once.

Watchers use etcd's own watch and resume from the last revision they saw
(registry.etcd_watch). The client is etcd3gw, over etcd's JSON gateway;
registry.etcd_client says why. Install it with `pip install 'corral[etcd]'`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable

from registry.backend import Registry
from registry.etcd_client import Entry, EtcdConnection, parse_etcd_url
from registry.etcd_keepalive import LeaseKeeper
from registry.etcd_watch import EtcdSource
from registry.instance import ServiceInstance, this_host
from registry.liveness import lease_expired, owner_dead, process_started
from registry.watch import Lease, Watcher

log = logging.getLogger(__name__)


class EtcdRegistry(Registry):
    """A registry in etcd that any number of hosts share.

    `url` is `etcd://HOST:PORT[/NAMESPACE][?timeout=SECONDS]`. Opening it
    reaches the server once, so a wrong address fails here: within
    `timeout` (default 5 s) with RegistryUnavailable naming the address,
    and a malformed URL with RegistryLocationError.
    """

    def __init__(self, url: str) -> None:
        self.location = url
        self._where = parse_etcd_url(url)
        self.namespace = self._where.namespace
        self._conn = EtcdConnection(self._where)
        self._conn.check()
        self._keeper = LeaseKeeper(self._conn)
        log.debug("opened etcd registry at %s%s", self._where.address, self.namespace)

    def register(self, instance: ServiceInstance, ttl: float | None = None) -> None:
        """Write the instance under a lease this process keeps alive.

        The lease has `ttl` seconds (rounded up to whole seconds, at least
        2), or 15 s without one. The instance is filled in like the file
        backend does (timestamp, heartbeat, ttl, pid creation time, host).
        """
        now = time.time()
        if ttl is not None:
            instance.ttl = ttl
        _stamp(instance, now)
        instance.timestamp = int(now)

        self._keeper.hold(self._key(instance), _value(instance), ttl)
        log.debug("registered %s (ttl %s)", self._key(instance), ttl)

    def renew(self, instance: ServiceInstance) -> None:
        """Refresh the instance's lease now and re-assert its whole record.

        The record is written only when the stored one differs from it
        (heartbeat aside) or is gone, so frequent renewals add no revisions
        to etcd's history; the lease, not the heartbeat, keeps it alive. An
        instance this registry does not hold (registered by another
        process, or pruned) is registered afresh with its `ttl`.
        """
        _stamp(instance, time.time())
        key = self._key(instance)
        if not self._keeper.renew(key, _value(instance), instance.ttl):
            self.register(instance, ttl=instance.ttl)

    def deregister(self, instance: ServiceInstance) -> None:
        """Delete the instance's key and end its lease; absent is no error."""
        self._keeper.release(self._key(instance))
        log.debug("deregistered %s", self._key(instance))

    def get_service(self, name: str) -> list[ServiceInstance]:
        """The instances of one service, read from etcd now."""
        _, entries = self._conn.get_prefix(self._service_prefix(name))
        return decode_service(name, entries)

    def list_services(self) -> dict[str, list[ServiceInstance]]:
        """Every service with at least one instance under the namespace."""
        _, entries = self._conn.get_prefix(self.namespace + "/")
        services: dict[str, list[ServiceInstance]] = {}
        for _entry, instance in _decode_all(entries):
            services.setdefault(instance.name, []).append(instance)
        return services

    def prune(self) -> list[ServiceInstance]:
        """Delete stale records and return them.

        Stale are: records of this registry registered with a ttl and not
        renewed within it (timed here, on this host's monotonic clock);
        records whose owner process on this host is proven gone; and records
        with no etcd lease whose heartbeat is older than their ttl. Records
        of other hosts under a lease are left to etcd, which deletes them
        when the lease runs out, so clocks of hosts need not agree. A record
        rewritten since it was read is kept.
        """
        removed = self._prune_overdue()
        _, entries = self._conn.get_prefix(self.namespace + "/")
        for entry, instance in _decode_all(entries):
            if not _stale(entry, instance):
                continue
            if self._conn.delete_unchanged(entry.key, entry.mod_revision):
                self._keeper.drop(entry.key)
                log.info("pruned stale instance %s", entry.key)
                removed.append(instance)
        return removed

    def _prune_overdue(self) -> list[ServiceInstance]:
        removed = []
        for key, value in self._keeper.overdue():
            self._keeper.release(key)
            instance = _instance(Entry(key, value, 0, 0))
            if instance is not None:
                log.info("pruned %s: not renewed within its ttl", key)
                removed.append(instance)
        return removed

    def watch(
        self, name: str, *, polling: bool = False, poll_interval: float = 0.0
    ) -> Watcher:
        """A watcher of one service, fed by etcd's watch on its keys.

        `polling` and `poll_interval` are accepted so that callers written
        for FileRegistry work unchanged; etcd's watch needs no polling.
        """
        prefix = self._service_prefix(name)
        source = EtcdSource(
            self._conn, prefix, lambda keys: decode_service(name, keys.values())
        )
        return Watcher(name, source)

    def lease(self, instance: ServiceInstance, ttl: float) -> Lease:
        """Register with `ttl` now, renew in the background, deregister on exit."""
        return Lease(self, instance, ttl)

    def close(self) -> None:
        """Stop keeping leases alive and end them: this process's instances go."""
        self._keeper.close()

    def __repr__(self) -> str:
        return f"EtcdRegistry({self.location!r})"

    def _key(self, instance: ServiceInstance) -> str:
        return f"{self.namespace}/{instance.name}/{instance.id}"

    def _service_prefix(self, name: str) -> str:
        return f"{self.namespace}/{name}/"


def decode_service(name: str, entries: Iterable[Entry]) -> list[ServiceInstance]:
    """The instances named `name` among etcd entries (as Kratos filters)."""
    return [i for _, i in _decode_all(entries) if i.name == name]


def _decode_all(entries: Iterable[Entry]) -> list[tuple[Entry, ServiceInstance]]:
    decoded = []
    for entry in entries:
        instance = _instance(entry)
        if instance is not None:
            decoded.append((entry, instance))
    return decoded


def _instance(entry: Entry) -> ServiceInstance | None:
    # One foreign value that is not an instance must not hide the others:
    # it is skipped with a warning that names its key.
    try:
        return ServiceInstance.from_dict(json.loads(entry.value))
    except ValueError as exc:
        log.warning("etcd key %s is not a service instance: %s", entry.key, exc)
        return None


def _value(instance: ServiceInstance) -> str:
    return json.dumps(instance.to_dict(), separators=(",", ":"))


def _stamp(instance: ServiceInstance, now: float) -> None:
    instance.heartbeat = now
    if instance.pid is not None:
        instance.host = instance.host or this_host()
        if instance.pid_started is None:
            instance.pid_started = process_started(instance.pid)


def _stale(entry: Entry, instance: ServiceInstance) -> bool:
    if owner_dead(instance):
        return True
    return entry.lease == 0 and lease_expired(instance)
