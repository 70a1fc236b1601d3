"""The etcd prefix follower: every revision applied once, across outages.

These tests look below the Watcher (which reports states, not events) at
the revisions the follower applies, to show that resuming after a dropped
connection neither misses nor repeats a change, and that a compacted
revision falls back to a fresh read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from registry.etcd_client import Entry, EtcdConnection, b64, parse_etcd_url
from registry.etcd_watch import PrefixFollower
from tests.etcd_server import EtcdServer, etcd_server
from tests.support import wait_for

__all__ = ["etcd_server"]  # the fixture, imported for pytest to find

PREFIX = "/microservices/api/"


class Recorder:
    """Collects what a follower reports, for a test to wait on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.revisions: list[int] = []
        self.last: dict[str, Entry] = {}

    def __call__(self, revision: int, keys: dict[str, Entry]) -> None:
        with self.lock:
            self.revisions.append(revision)
            self.last = keys

    def values(self) -> dict[str, str]:
        with self.lock:
            return {key: entry.value for key, entry in self.last.items()}


@pytest.fixture
def conn(etcd_server: EtcdServer) -> EtcdConnection:
    return EtcdConnection(parse_etcd_url(etcd_server.url()))


@pytest.fixture
def follower(conn: EtcdConnection) -> Iterator[tuple[PrefixFollower, Recorder]]:
    recorder = Recorder()
    follower = PrefixFollower(conn, PREFIX, recorder)
    yield follower, recorder
    follower.stop()


def put(conn: EtcdConnection, key: str, value: str) -> int:
    """Write a key; returns the revision of the write."""
    result = conn.call("put", "/kv/put", {"key": b64(key), "value": b64(value)})
    return int(result["header"]["revision"])


def delete(conn: EtcdConnection, key: str) -> int:
    result = conn.call("delete", "/kv/deleterange", {"key": b64(key)})
    return int(result["header"]["revision"])


def test_every_change_made_around_a_restart_is_applied_once(
    etcd_server: EtcdServer,
    conn: EtcdConnection,
    follower: tuple[PrefixFollower, Recorder],
) -> None:
    watched, recorder = follower
    before = put(conn, PREFIX + "a", "1")
    watched.start()
    writes = [put(conn, PREFIX + "b", "1")]
    wait_for(lambda: watched.revision == writes[-1], timeout=5, what="first write")

    etcd_server.stop()
    etcd_server.start()
    put(conn, "/microservices/other/x", "ignored")
    writes += [
        put(conn, PREFIX + "c", "1"),
        delete(conn, PREFIX + "a"),
        put(conn, PREFIX + "b", "2"),
    ]

    wait_for(lambda: watched.revision == writes[-1], timeout=10, what="resume")
    assert recorder.revisions == [before, *writes]
    assert recorder.values() == {PREFIX + "b": "2", PREFIX + "c": "1"}


def test_compacted_revision_falls_back_to_a_fresh_read(
    conn: EtcdConnection, follower: tuple[PrefixFollower, Recorder]
) -> None:
    watched, recorder = follower
    put(conn, PREFIX + "a", "1")
    # Read now, as start() does, but open the watch only after the history
    # it would resume from has been compacted away.
    watched._read_all()
    put(conn, PREFIX + "a", "2")
    last = put(conn, PREFIX + "b", "1")
    conn.call("compact", "/kv/compaction", {"revision": str(last), "physical": True})

    thread = threading.Thread(target=watched._run, daemon=True)
    thread.start()

    wait_for(lambda: watched.revision >= last, timeout=10, what="fresh read")
    assert recorder.values() == {PREFIX + "a": "2", PREFIX + "b": "1"}
    after = put(conn, PREFIX + "c", "1")
    wait_for(lambda: watched.revision == after, timeout=5, what="watch after read")
    assert PREFIX + "c" in recorder.values()
    watched.stop()
    thread.join(5)
    assert not thread.is_alive()
