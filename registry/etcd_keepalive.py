"""Holding this process's etcd registrations: one lease per instance.

Each registered instance is written under its own etcd lease. Two kinds:

- kept (registered without a ttl): one background thread refreshes the
  lease at a third of its TTL for as long as the instance stays
  registered. While the server cannot be reached it keeps trying, with a
  growing pause and a warning per failure (the Kratos registrar gives up
  after five tries and the service silently drops out; we never give up).
  If the lease ran out meanwhile, or the server lost it, the record is
  written again under a new lease.
- renewed (registered with a ttl): the lease lives only as long as the
  caller renews it (Registry.renew, or the Lease context that renews in
  the background), as the contract says of a ttl. A renewal that finds
  the lease gone writes the record again under a new one.

A process that dies stops refreshing, so its records vanish when their
leases run out: no pruning is needed for them.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from dataclasses import dataclass

from registry.errors import RegistryError
from registry.etcd_client import EtcdConnection

log = logging.getLogger(__name__)

#: The shortest lease etcd grants with its default election timeout.
MIN_LEASE_SECONDS = 2
#: Lease seconds of a kept record (Kratos's default registration ttl).
DEFAULT_KEPT_TTL = 15
# Pause after the first failed refresh; it doubles up to the maximum.
_BACKOFF_FIRST = 0.2
_BACKOFF_MAX = 5.0


def lease_seconds(ttl: float) -> int:
    """The whole-second etcd lease for a requested ttl (at least 2 s)."""
    return max(MIN_LEASE_SECONDS, math.ceil(ttl))


@dataclass
class _Held:
    """One record this process holds under a lease."""

    key: str
    value: str
    ttl: int
    lease: int
    due: float
    #: The requested ttl of a renewed record; None for a kept one.
    renew_within: float | None = None
    renewed: float = 0.0
    failures: int = 0

    @property
    def kept(self) -> bool:
        """Whether the background thread refreshes this lease."""
        return self.renew_within is None


class LeaseKeeper:
    """Holds records under leases and refreshes the leases in one thread.

    Operations on etcd for held records (write, refresh, release) take one
    lock, so a refresh that re-registers can never bring back a record that
    was just released.
    """

    def __init__(self, conn: EtcdConnection) -> None:
        self._conn = conn
        self._held: dict[str, _Held] = {}
        self._ops = threading.Lock()
        self._wake = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def hold(self, key: str, value: str, renew_within: float | None) -> None:
        """Write `key` under a new lease.

        With `renew_within` None the lease is kept alive here; otherwise it
        lasts until renew() is not called within that many seconds (etcd
        ends it after lease_seconds(renew_within)).
        """
        ttl = _lease_for(renew_within)
        with self._ops:
            old = self._held.get(key)
            lease = self._conn.grant(ttl)
            try:
                self._conn.put(key, value, lease)
            except RegistryError:
                self._revoke_quietly(lease)
                raise
            held = _Held(key, value, ttl, lease, self._due(ttl), renew_within)
            held.renewed = time.monotonic()
            self._remember(held)
            if old is not None:
                self._revoke_quietly(old.lease)

    def renew(self, key: str, value: str, renew_within: float | None) -> bool:
        """Refresh the lease of `key` now and re-assert its record.

        Returns False when this keeper does not hold `key` with the same
        kind of lease (the caller then registers it afresh).
        """
        with self._ops:
            held = self._held.get(key)
            if held is None or held.renew_within != renew_within:
                return False
            if self._conn.keep_alive(held.lease) <= 0:
                log.warning("etcd lease of %s had run out; registering it again", key)
                held.lease = self._conn.grant(held.ttl)
            self._reassert(held, value)
            held.due = self._due(held.ttl)
            held.renewed = time.monotonic()
            held.failures = 0
            return True

    def _reassert(self, held: _Held, value: str) -> None:
        # Writing on every renewal would add a revision to etcd's history
        # each time (it grows until compacted) and wake every watcher of
        # the prefix, Go ones included: write only what differs.
        stored = self._conn.get_key(held.key)
        if (
            stored is None
            or stored.lease != held.lease
            or not same_record(stored.value, value)
        ):
            log.debug("writing %s again", held.key)
            self._conn.put(held.key, value, held.lease)
        held.value = value

    def overdue(self) -> list[tuple[str, str]]:
        """(key, value) of renewed records not renewed within their ttl."""
        now = time.monotonic()
        with self._wake:
            return [
                (h.key, h.value)
                for h in self._held.values()
                if h.renew_within is not None and now - h.renewed > h.renew_within
            ]

    def drop(self, key: str) -> None:
        """Forget `key` (already deleted by someone) and end its lease."""
        with self._ops:
            with self._wake:
                held = self._held.pop(key, None)
            if held is not None:
                self._revoke_quietly(held.lease)

    def release(self, key: str) -> None:
        """Stop keeping `key` alive, delete it and end its lease."""
        with self._ops:
            with self._wake:
                held = self._held.pop(key, None)
            self._conn.delete(key)
            if held is not None:
                self._revoke_quietly(held.lease)

    def close(self) -> None:
        """Stop the thread and end every held lease (their keys go too)."""
        with self._wake:
            self._stopped = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join()
        with self._ops:
            with self._wake:
                held = list(self._held.values())
                self._held.clear()
            for item in held:
                try:
                    self._conn.revoke(item.lease)
                except RegistryError as exc:
                    # Server unreachable: the remaining leases run out on
                    # their own, no need to wait for each in turn.
                    log.warning("could not end etcd leases on close: %s", exc)
                    return

    def _remember(self, held: _Held) -> None:
        with self._wake:
            self._held[held.key] = held
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="corral-etcd-keepalive", daemon=True
                )
                self._thread.start()
            self._wake.notify_all()

    def _run(self) -> None:
        while True:
            due = self._wait_for_due()
            if due is None:
                return
            for key in due:
                self._refresh(key)

    def _wait_for_due(self) -> list[str] | None:
        """Sleep until a lease needs refreshing; None once closed."""
        with self._wake:
            while not self._stopped:
                now = time.monotonic()
                items = list(self._held.values())
                kept = [h for h in items if h.kept]
                due = [h.key for h in kept if h.due <= now]
                if due:
                    return due
                earliest = min((h.due for h in kept), default=now + 60.0)
                self._wake.wait(earliest - now)
            return None

    def _refresh(self, key: str) -> None:
        with self._ops:
            held = self._held.get(key)
            if held is None or not held.kept or held.due > time.monotonic():
                return
            try:
                self._keep(held)
            except RegistryError as exc:
                self._failed(held, exc)
                return
            held.failures = 0
            held.due = self._due(held.ttl)

    def _keep(self, held: _Held) -> None:
        """Refresh one lease; write the record again if the lease is gone."""
        if self._conn.keep_alive(held.lease) > 0:
            return
        log.warning(
            "etcd lease of %s ran out (server unreachable too long or "
            "restarted without it); registering it again",
            held.key,
        )
        held.lease = self._conn.grant(held.ttl)
        self._conn.put(held.key, held.value, held.lease)

    def _failed(self, held: _Held, exc: RegistryError) -> None:
        held.failures += 1
        pause = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** (held.failures - 1))
        pause *= random.uniform(0.8, 1.2)
        held.due = time.monotonic() + pause
        log.warning(
            "keeping %s registered failed (attempt %d): %s; retrying in %.1f s",
            held.key,
            held.failures,
            exc,
            pause,
        )

    def _revoke_quietly(self, lease: int) -> None:
        try:
            self._conn.revoke(lease)
        except RegistryError as exc:
            # The lease then simply runs out on the server.
            log.debug("could not revoke etcd lease %s: %s", lease, exc)

    @staticmethod
    def _due(ttl: int) -> float:
        return time.monotonic() + ttl / 3.0


def same_record(a: str, b: str) -> bool:
    """Whether two JSON records are equal but for their heartbeat."""
    try:
        first, second = json.loads(a), json.loads(b)
    except ValueError:
        return False
    if not isinstance(first, dict) or not isinstance(second, dict):
        return False
    first.pop("heartbeat", None)
    second.pop("heartbeat", None)
    return bool(first == second)


def _lease_for(renew_within: float | None) -> int:
    if renew_within is None:
        return DEFAULT_KEPT_TTL
    return lease_seconds(renew_within)
