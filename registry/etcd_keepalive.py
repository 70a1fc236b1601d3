"""Keeping this process's etcd registrations alive: one lease per instance.

Each registered instance is written under its own etcd lease, and one
background thread refreshes every lease at a third of its TTL. While the
server cannot be reached the thread keeps trying, with a growing pause and
a warning per failure, for as long as the instance stays registered (the
Kratos registrar gives up after five tries and the service silently drops
out; we never give up). If the lease ran out meanwhile, or the server lost
it, the record is written again under a new lease.

A process that dies stops refreshing, so its records vanish when their
leases run out: no pruning is needed for them.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from dataclasses import dataclass

from registry.errors import RegistryError, RegistryUnavailable
from registry.etcd_client import EtcdConnection

log = logging.getLogger(__name__)

#: The shortest lease etcd grants with its default election timeout.
MIN_LEASE_SECONDS = 2
# Pause after the first failed refresh; it doubles up to the maximum.
_BACKOFF_FIRST = 0.2
_BACKOFF_MAX = 5.0


def lease_seconds(ttl: float) -> int:
    """The whole-second etcd lease for a requested ttl (at least 2 s)."""
    return max(MIN_LEASE_SECONDS, math.ceil(ttl))


@dataclass
class _Held:
    """One record this process keeps registered."""

    key: str
    value: str
    ttl: int
    lease: int
    due: float
    failures: int = 0


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

    def hold(self, key: str, value: str, ttl: int) -> None:
        """Write `key` under a lease of `ttl` seconds and keep it alive."""
        with self._ops:
            old = self._held.get(key)
            if old is not None and old.ttl == ttl and self._put_existing(old, value):
                return
            lease = self._conn.grant(ttl)
            try:
                self._conn.put(key, value, lease)
            except RegistryError:
                self._revoke_quietly(lease)
                raise
            self._remember(_Held(key, value, ttl, lease, self._due(ttl)))
            if old is not None:
                self._revoke_quietly(old.lease)

    def renew(self, key: str, value: str) -> bool:
        """Refresh the lease of `key` now and rewrite its record.

        Returns False when this keeper does not hold `key`.
        """
        with self._ops:
            held = self._held.get(key)
            if held is None:
                return False
            if self._conn.keep_alive(held.lease) <= 0:
                held.lease = self._conn.grant(held.ttl)
            self._conn.put(key, value, held.lease)
            held.value = value
            held.due = self._due(held.ttl)
            held.failures = 0
            return True

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
                self._revoke_quietly(item.lease)

    def _put_existing(self, held: _Held, value: str) -> bool:
        # Reuse the current lease; if the server lost it, tell the caller
        # to grant a new one.
        try:
            self._conn.put(held.key, value, held.lease)
        except RegistryUnavailable:
            raise
        except RegistryError as exc:
            log.debug("lease %s of %s is gone: %s", held.lease, held.key, exc)
            return False
        held.value = value
        return True

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
                due = [h.key for h in items if h.due <= now]
                if due:
                    return due
                earliest = min((h.due for h in items), default=now + 60.0)
                self._wake.wait(earliest - now)
            return None

    def _refresh(self, key: str) -> None:
        with self._ops:
            held = self._held.get(key)
            if held is None or held.due > time.monotonic():
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
