"""What every registry backend promises (SPEC 2.2, 2.3), run on each backend
named in tests/backends.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from registry import (
    Registry,
    ServiceInstance,
    WatcherStopped,
    open_registry,
    this_host,
)
from tests.backends import BACKENDS
from tests.support import corral_env, wait_for


@pytest.fixture(params=sorted(BACKENDS))
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return BACKENDS[request.param](tmp_path)


@pytest.fixture
def reg(location: str) -> Iterator[Registry]:
    registry = open_registry(location)
    yield registry
    registry.close()


def api(ident: str = "api-1", **fields: object) -> ServiceInstance:
    base: dict[str, object] = {
        "id": ident,
        "name": "api",
        "version": "v1",
        "endpoints": [f"http://127.0.0.1:80{ident[-1]}"],
    }
    base.update(fields)
    return ServiceInstance(**base)  # type: ignore[arg-type]


def ids(instances: list[ServiceInstance] | None) -> list[str]:
    assert instances is not None, "watcher returned no change"
    return sorted(i.id for i in instances)


@pytest.fixture
def child_process() -> Iterator[psutil.Popen]:
    """A live process of this user that the test owns and ends."""
    proc = psutil.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    if proc.is_running():
        proc.kill()
    proc.wait(10)


# -- records ---------------------------------------------------------------


def test_register_then_get_and_list(reg: Registry) -> None:
    reg.register(api("api-1", metadata={"env": "dev", "port": 8080, "on": True}))
    reg.register(ServiceInstance(id="db-1", name="db"))

    [got] = reg.get_service("api")
    assert got.endpoints == ["http://127.0.0.1:801"]
    assert got.metadata == {"env": "dev", "port": "8080", "on": "true"}
    assert isinstance(got.timestamp, int) and got.timestamp > 0
    assert sorted(reg.list_services()) == ["api", "db"]
    assert reg.get_service("nothing") == []


def test_register_replaces_by_name_and_id(reg: Registry) -> None:
    reg.register(api("api-1", version="v1"))
    reg.register(api("api-1", version="v2"))

    assert [i.version for i in reg.get_service("api")] == ["v2"]


def test_deregister_removes_and_tolerates_absent(reg: Registry) -> None:
    reg.register(api("api-1"))
    reg.register(api("api-2"))

    reg.deregister(api("api-1"))
    reg.deregister(api("api-9"))

    assert ids(reg.get_service("api")) == ["api-2"]
    reg.deregister(api("api-2"))
    assert reg.list_services() == {}


def test_register_with_pid_fills_creation_time_and_host(reg: Registry) -> None:
    reg.register(api(pid=os.getpid()))

    [got] = reg.get_service("api")
    assert got.pid == os.getpid()
    assert got.host == this_host()
    assert got.pid_started == pytest.approx(psutil.Process().create_time(), abs=1)


def test_renew_restores_a_record_stripped_of_corral_fields(reg: Registry) -> None:
    mine = api(pid=os.getpid())
    reg.register(mine, ttl=30)
    reg.deregister(mine)
    reg.register(api())  # as a program that drops unknown fields leaves it

    reg.renew(mine)

    [got] = reg.get_service("api")
    assert (got.pid, got.ttl, got.host) == (os.getpid(), 30, this_host())
    assert got.heartbeat is not None


# -- pruning ---------------------------------------------------------------


def test_prune_removes_instance_of_a_process_that_ended(
    reg: Registry, child_process: psutil.Popen
) -> None:
    reg.register(api("api-1", pid=child_process.pid))
    reg.register(api("api-2", pid=os.getpid()))
    assert reg.prune() == []

    child_process.kill()
    child_process.wait(10)

    assert ids(reg.prune()) == ["api-1"]
    assert ids(reg.get_service("api")) == ["api-2"]


def test_prune_removes_instance_whose_pid_was_reused(
    reg: Registry, child_process: psutil.Popen
) -> None:
    # The pid is live, but it belongs to a process created at another time
    # than the recorded owner: what a reused pid looks like.
    started = child_process.create_time()
    reg.register(api("api-1", pid=child_process.pid, pid_started=started - 5))
    reg.register(api("api-2", pid=child_process.pid, pid_started=started + 0.5))

    assert ids(reg.prune()) == ["api-1"]
    assert ids(reg.get_service("api")) == ["api-2"]


def test_prune_leaves_other_hosts_and_unowned_records(reg: Registry) -> None:
    gone = _pid_of_ended_process()
    reg.register(api("api-1", pid=gone, host="another-host.example"))
    reg.register(api("api-2"))

    assert reg.prune() == []
    assert ids(reg.get_service("api")) == ["api-1", "api-2"]


def test_lease_not_renewed_is_pruned_after_ttl(reg: Registry) -> None:
    reg.register(api("api-1"), ttl=0.3)
    reg.register(api("api-2"), ttl=60)
    assert reg.prune() == []

    wait_for(lambda: reg.prune(), timeout=5, what="lease to expire")

    assert ids(reg.get_service("api")) == ["api-2"]


def test_lease_context_renews_then_deregisters(reg: Registry) -> None:
    with reg.lease(api("api-1"), ttl=0.3):
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # three ttls: only renewal keeps it
            reg.prune()
            assert ids(reg.get_service("api")) == ["api-1"]
            time.sleep(0.05)

    assert reg.get_service("api") == []


# -- watching --------------------------------------------------------------


def test_watch_first_returns_current_then_changes(reg: Registry) -> None:
    reg.register(api("api-1"))
    with reg.watch("api") as watcher:
        assert ids(watcher.next(timeout=5)) == ["api-1"]

        reg.register(api("api-2"))
        assert ids(watcher.next(timeout=5)) == ["api-1", "api-2"]

        reg.deregister(api("api-1"))
        assert ids(watcher.next(timeout=5)) == ["api-2"]


def test_watch_sees_change_made_right_after_it_starts(reg: Registry) -> None:
    watcher = reg.watch("api")
    reg.register(api("api-1"))
    first = watcher.next(timeout=5)
    if first == []:
        first = watcher.next(timeout=5)

    assert ids(first) == ["api-1"]
    watcher.stop()


def test_watch_ignores_unrelated_and_unchanged_writes(reg: Registry) -> None:
    reg.register(api("api-1"))
    reg.register(api("api-2"))
    watcher = reg.watch("api")
    assert ids(watcher.next(timeout=5)) == ["api-1", "api-2"]

    # Writes that leave api's instances as they were. (A deregister and a
    # register back are two writes, and a watcher may rightly see the
    # moment between them, so they are no test of this.)
    reg.register(ServiceInstance(id="db-1", name="db"))
    reg.renew(api("api-1"))
    reg.register(api("api-2"))

    assert watcher.next(timeout=0.5) is None
    reg.register(api("api-3"))
    assert ids(watcher.next(timeout=5)) == ["api-1", "api-2", "api-3"]
    watcher.stop()


def test_stop_wakes_a_thread_blocked_in_next(reg: Registry) -> None:
    watcher = reg.watch("api")
    watcher.next(timeout=5)
    outcome: list[BaseException] = []

    def block() -> None:
        try:
            watcher.next()
        except WatcherStopped as exc:
            outcome.append(exc)

    thread = threading.Thread(target=block)
    thread.start()
    time.sleep(0.1)  # let it block: the point is to wake a waiting thread
    started = time.monotonic()
    watcher.stop()
    thread.join(5)

    assert outcome and time.monotonic() - started < 1
    with pytest.raises(WatcherStopped, match="'api'"):
        watcher.next(timeout=0)


def test_iteration_ends_when_stopped(reg: Registry) -> None:
    reg.register(api("api-1"))
    watcher = reg.watch("api")
    seen: list[list[str]] = []
    for instances in watcher:
        seen.append(ids(instances))
        if len(seen) == 1:
            reg.register(api("api-2"))
        else:
            watcher.stop()

    assert seen == [["api-1"], ["api-1", "api-2"]]


def test_awatch_yields_changes(reg: Registry) -> None:
    async def follow() -> list[list[str]]:
        seen: list[list[str]] = []
        async for instances in reg.awatch("api"):
            seen.append(ids(instances))
            if len(seen) == 1:
                await asyncio.to_thread(reg.register, api("api-1"))
            else:
                break
        return seen

    assert asyncio.run(asyncio.wait_for(follow(), 10)) == [[], ["api-1"]]


def test_watcher_in_another_process_sees_registration(
    reg: Registry, location: str
) -> None:
    script = textwrap.dedent(
        """
        import sys
        from registry import open_registry
        watcher = open_registry(sys.argv[1]).watch("api")
        for instances in watcher:
            print(",".join(sorted(i.id for i in instances)), flush=True)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, location],
        stdout=subprocess.PIPE,
        text=True,
        env=corral_env(),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "\n"
        reg.register(api("api-1"))
        assert child.stdout.readline() == "api-1\n"
    finally:
        child.kill()
        child.wait(10)


def _pid_of_ended_process() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    return proc.pid


def test_instances_round_trip_as_json(reg: Registry) -> None:
    reg.register(api("api-1", metadata={"a": "b"}))
    [got] = reg.get_service("api")

    data = json.loads(json.dumps(got.to_dict()))
    assert ServiceInstance.from_dict(data).identity() == got.identity()
