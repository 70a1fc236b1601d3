"""Following the keys under one etcd prefix, across dropped connections.

A PrefixFollower reads every key under the prefix once, remembers the
store revision of that read, then opens etcd's watch from the next
revision over the JSON gateway's streaming `/v3/watch`. Each event moves
its copy of the keys forward and records the event's revision. When the
stream ends (server restarted, connection cut, idle read timeout) it opens
a new watch from the last applied revision + 1, so no change is missed
and none is applied twice. If etcd compacted that revision away, it reads
the prefix afresh and carries on from there. All of this happens in one
daemon thread per follower; the thread never ends on its own.

EtcdSource adapts a follower to registry.watch.Watcher.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import requests

from registry.errors import RegistryError
from registry.etcd_client import Entry, EtcdConnection, b64, entry_from_kv, prefix_end
from registry.instance import ServiceInstance

log = logging.getLogger(__name__)

#: Seconds a watch stream may stay silent before it is opened again; a
#: reopen from the last revision is harmless and finds a hung server.
IDLE_REOPEN = 30.0
# Pause after the first failed reconnect; it doubles up to the maximum.
_RECONNECT_FIRST = 0.05
_RECONNECT_MAX = 1.0

# What ends one watch stream and is survived by opening another.
_STREAM_ERRORS = (
    RegistryError,
    requests.RequestException,
    ValueError,
    KeyError,
    OSError,
)

#: Called with (revision, keys) after each revision is applied.
OnChange = Callable[[int, dict[str, Entry]], None]


class PrefixFollower:
    """Keeps a copy of the keys under `prefix`, moved forward by etcd's watch."""

    def __init__(self, conn: EtcdConnection, prefix: str, on_change: OnChange):
        self._conn = conn
        self._prefix = prefix
        self._on_change = on_change
        self._lock = threading.Lock()
        self._keys: dict[str, Entry] = {}
        self._revision = 0
        self._stopped = threading.Event()
        self._response: requests.Response | None = None
        self._thread: threading.Thread | None = None
        self._received = False
        self._session = requests.Session()

    @property
    def revision(self) -> int:
        """The store revision the copy reflects."""
        return self._revision

    def keys(self) -> dict[str, Entry]:
        """A copy of the keys under the prefix as last known."""
        with self._lock:
            return dict(self._keys)

    def start(self) -> None:
        """Read the prefix now (errors propagate), then follow it in a thread."""
        self._read_all()
        self._thread = threading.Thread(
            target=self._run, name=f"corral-etcd-watch {self._prefix}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop following; cuts the open stream so the thread ends soon."""
        self._stopped.set()
        response = self._response
        if response is not None:
            _cut(response)
        self._session.close()

    def _read_all(self) -> None:
        revision, entries = self._conn.get_prefix(self._prefix)
        with self._lock:
            self._keys = {entry.key: entry for entry in entries}
            self._revision = revision
        self._on_change(revision, self.keys())

    def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            try:
                failures = self._follow_once(failures)
            except _STREAM_ERRORS as exc:
                if self._stopped.is_set():
                    break
                failures += 1
                self._log_failure(failures, exc)
            if failures:
                pause = min(_RECONNECT_MAX, _RECONNECT_FIRST * 2 ** (failures - 1))
                self._stopped.wait(pause)
        log.debug("stopped following %s", self._prefix)

    def _follow_once(self, failures: int) -> int:
        """Follow one stream; returns the failure count for the backoff."""
        self._received = False
        if not self._follow():
            self._read_all()
            return 0
        if self._received:
            return 0
        # A stream that ended before saying anything is a failure too, or
        # a server that accepts and hangs up at once would spin this loop.
        return failures + 1

    def _log_failure(self, failures: int, exc: BaseException) -> None:
        if failures == 1:
            log.warning(
                "watch of %s on etcd at %s lost: %s; resuming from revision %s",
                self._prefix,
                self._conn.location.address,
                exc,
                self._revision + 1,
            )
        else:
            log.debug(
                "watch of %s: reconnect %d failed: %s", self._prefix, failures, exc
            )

    def _follow(self) -> bool:
        """Apply one watch stream until it ends.

        Returns True when the stream simply ended (reopen from the next
        revision) and False when etcd compacted the revision away (read
        the prefix again).
        """
        response = self._open()
        try:
            for line in response.iter_lines():
                if self._stopped.is_set():
                    return True
                if not line.strip():
                    continue
                self._received = True
                if not self._apply(json.loads(line)):
                    return False
        finally:
            self._response = None
            response.close()
        return True

    def _open(self) -> requests.Response:
        request: dict[str, Any] = {
            "create_request": {
                "key": b64(self._prefix),
                "range_end": prefix_end(self._prefix),
                "start_revision": str(self._revision + 1),
                "progress_notify": True,
            }
        }
        # A session of its own: a stream holds its connection for as long
        # as it lasts, which must not starve the registry's other calls.
        response = self._session.post(
            self._conn.client.get_url("/watch"),
            json=request,
            stream=True,
            timeout=(self._conn.location.timeout, IDLE_REOPEN),
        )
        if response.status_code != 200:
            text = response.text[:300]
            response.close()
            raise RegistryError(f"etcd watch refused ({response.status_code}): {text}")
        self._response = response
        if self._stopped.is_set():
            _cut(response)
        return response

    def _apply(self, message: dict[str, Any]) -> bool:
        """Apply one watch response; False when the revision was compacted."""
        if "error" in message:
            raise RegistryError(f"etcd watch error: {message['error']}")
        result = message.get("result", {})
        compacted = int(result.get("compact_revision", 0))
        if compacted:
            log.info(
                "etcd compacted %s up to revision %s; reading it afresh",
                self._prefix,
                compacted,
            )
            return False
        if result.get("canceled"):
            reason = result.get("cancel_reason", "no reason given")
            raise RegistryError(f"etcd canceled the watch: {reason}")
        events = result.get("events", [])
        if events:
            self._apply_events(events)
        elif not result.get("created"):
            # A progress report: every change up to this revision was sent.
            header = result.get("header", {})
            self._revision = max(self._revision, int(header.get("revision", 0)))
        return True

    def _apply_events(self, events: list[dict[str, Any]]) -> None:
        # The events of one transaction share a revision: apply them all
        # before telling, so nobody sees half a transaction.
        by_revision: dict[int, list[dict[str, Any]]] = {}
        for event in events:
            revision = int(event["kv"].get("mod_revision", 0))
            by_revision.setdefault(revision, []).append(event)
        for revision in sorted(by_revision):
            if revision <= self._revision:
                continue
            self._apply_revision(revision, by_revision[revision])

    def _apply_revision(self, revision: int, events: list[dict[str, Any]]) -> None:
        with self._lock:
            for event in events:
                entry = entry_from_kv(event["kv"])
                if event.get("type") == "DELETE":
                    self._keys.pop(entry.key, None)
                else:
                    self._keys[entry.key] = entry
            self._revision = revision
        self._on_change(revision, self.keys())


def _cut(response: requests.Response) -> None:
    """Shut the socket under a streaming response so a blocked read returns."""
    connection = getattr(response.raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError as exc:
            log.debug("watch socket already closed: %s", exc)
    response.close()


class EtcdSource:
    """A registry.watch.ChangeSource for one service on etcd."""

    def __init__(
        self,
        conn: EtcdConnection,
        prefix: str,
        decode: Callable[[dict[str, Entry]], list[ServiceInstance]],
    ) -> None:
        self._decode = decode
        self._notify: Callable[[], None] | None = None
        self.follower = PrefixFollower(conn, prefix, self._changed)

    def start(self, notify: Callable[[], None]) -> None:
        """Read the service's keys now, then follow them and call `notify`."""
        self._notify = notify
        self.follower.start()
        notify()

    def fetch(self) -> list[ServiceInstance]:
        """The service's instances as the follower last knows them."""
        return self._decode(self.follower.keys())

    def close(self) -> None:
        """Stop following."""
        self.follower.stop()

    def _changed(self, revision: int, keys: dict[str, Entry]) -> None:
        log.debug("revision %s applied", revision)
        if self._notify is not None:
            self._notify()
