"""Crashes for real: kill -9 of registry writers and of `corral up` itself.

A registry writer killed at a random moment must leave a file that parses
and that holds every registration the library acknowledged. A supervisor
killed while it starts or stops must leave no process behind once the next
`corral up` ran, and that next run must start clean.

The random moments come from a seeded generator; the seed is printed so a
failure can be replayed with CORRAL_RELIABILITY_SEED.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from registry import FileRegistry
from tests.reliability_support import TaggedUp, alive, new_tag, tagged
from tests.support import corral_env, wait_for
from tests.up_support import Up

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="kill -9 and /proc (Linux)"
)

PY = sys.executable
WRITER = Path(__file__).with_name("reliability_writer.py")

#: How many times a writer is killed; each kill comes after 40-120 acks.
WRITER_KILLS = int(os.environ.get("CORRAL_RELIABILITY_WRITER_KILLS", "30"))

#: How many times `corral up` is killed while it starts.
START_KILLS = int(os.environ.get("CORRAL_RELIABILITY_START_KILLS", "3"))

SLOTS = 150


@pytest.fixture
def rng() -> random.Random:
    """A seeded generator; the seed is printed for a replay."""
    seed = int(os.environ.get("CORRAL_RELIABILITY_SEED", time.time_ns() % 2**32))
    print(f"CORRAL_RELIABILITY_SEED={seed}")
    return random.Random(seed)


# -- registry writers ----------------------------------------------------------


class _Parser(threading.Thread):
    """Parses the registry file over and over while the writers run."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.reads = 0
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.001):
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                continue
            try:
                json.loads(raw)
                self.reads += 1
            except ValueError as exc:
                self.failures.append(f"{exc}: {raw[:60]!r}...{raw[-60:]!r}")


def _kill_one_writer(
    path: Path, first: int, rng: random.Random
) -> tuple[list[int], int]:
    """Start a writer at seq `first`, kill -9 it at a random moment.

    Returns the seqs it acknowledged and its exit status.
    """
    writer = subprocess.Popen(
        [PY, str(WRITER), str(path), str(first), str(SLOTS)],
        stdout=subprocess.PIPE,
        text=True,
        env=corral_env(),
    )
    acked: list[int] = []

    def read() -> None:
        assert writer.stdout is not None
        acked.extend(int(line) for line in writer.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    target = rng.randint(40, 120)
    try:
        wait_for(
            lambda: len(acked) >= target or writer.poll() is not None,
            timeout=60,
            what=f"{target} acknowledged registrations",
        )
        # A random point inside the next register() call (one takes a few ms).
        time.sleep(rng.uniform(0.0, 0.005))
    finally:
        writer.kill()
        writer.wait(10)
    reader.join(10)
    return acked, writer.returncode


def _slots_in(path: Path) -> dict[int, int]:
    """slot -> seq of the file, parsed strictly and through FileRegistry."""
    data = json.loads(path.read_bytes())
    assert data["version"] == "1.0.0"
    found: dict[int, int] = {}
    for instances in FileRegistry(path).list_services().values():
        for inst in instances:
            slot = int(inst.id.removeprefix("slot-"))
            assert slot not in found, f"{inst.id} twice in the file"
            found[slot] = int(inst.metadata["seq"])
    return found


def test_kill_9_of_writers_loses_no_acknowledged_registration(
    tmp_path: Path, rng: random.Random
) -> None:
    path = tmp_path / "registry.json"
    FileRegistry(path)
    parser = _Parser(path)
    parser.start()
    expected: dict[int, int] = {}
    first = 0

    try:
        for kill in range(WRITER_KILLS):
            acked, status = _kill_one_writer(path, first, rng)
            assert status == -signal.SIGKILL, f"writer {kill} ended by itself"
            assert acked == list(range(first, first + len(acked)))
            expected.update((seq % SLOTS, seq) for seq in acked)
            pending = first + len(acked)  # the call the kill may have cut

            found = _slots_in(path)
            for slot in set(found) | set(expected):
                allowed = {expected.get(slot)}
                if slot == pending % SLOTS:
                    allowed.add(pending)
                assert found.get(slot) in allowed, (kill, slot, found.get(slot))
            first = pending
    finally:
        parser.done.set()
        parser.join(10)

    temps = list(tmp_path.glob(".registry.json.*.tmp"))
    print(
        f"{WRITER_KILLS} kills, {first} acknowledged registrations, "
        f"{parser.reads} concurrent parses, {len(temps)} temporary files left"
    )
    assert parser.failures == []
    assert first >= 40 * WRITER_KILLS
    assert parser.reads > 0


# -- the supervisor ------------------------------------------------------------

SLOW = """
import signal, sys, time
# Stubborn on purpose: a stop must wait out the grace period, so that the
# supervisor can be killed while it is stopping.
signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(float(sys.argv[1]))
print("up", flush=True)
time.sleep(1000)
"""

CONFIG = """
services:
  tree:
    command: sh -c "sleep 1000 & sleep 1000"
  slow:
    command: {py} slow.py 2.0
    readiness: {{log_line: "^up$", interval: 50ms, retries: 200}}
    stop_grace_period: {grace}
  after:
    command: sh -c "sleep 1000 & sleep 1000"
    replicas: 2
    depends_on: {{slow: {{condition: service_healthy}}}}
  last:
    command: sleep 1000
    depends_on: {{after: {{condition: service_started}}}}
"""

IDS = ("tree-1", "slow-1", "after-1", "after-2", "last-1")


def _config(grace: str) -> str:
    return textwrap.dedent(CONFIG.format(py=PY, grace=grace))


def _processes_of(run: TaggedUp) -> list[psutil.Process]:
    """Every process of the run now, by pid and creation time (not corral)."""
    run.remember()
    found = {p.pid: p for p in tagged(run.tag)}
    found.update(run.seen)
    found.pop(run.proc.pid, None)
    return list(found.values())


def _kill_supervisor(run: TaggedUp) -> list[psutil.Process]:
    """kill -9 `corral up`; returns its processes as they were just before."""
    before = _processes_of(run)
    run.proc.kill()
    run.proc.wait(10)
    run._reader.join(10)
    return before


def _assert_children_die(run: TaggedUp, before: list[psutil.Process]) -> None:
    """The direct children get the parent-death signal: gone within 2 s."""
    direct = [p for p in before if p.pid in run.started()]
    wait_for(lambda: not alive(direct), timeout=2.0, what="children to die")


def _assert_leftovers_end(
    old: TaggedUp, before: list[psutil.Process], new: TaggedUp
) -> None:
    """The next run ends all the old run left and prunes its entries."""
    old_pids = {p.pid for p in before}

    def clean() -> bool:
        return not alive(before) and not alive(tagged(old.tag))

    def pruned() -> bool:
        return not {i["pid"] for i in new.instances().values()} & old_pids

    wait_for(clean, timeout=10, what=f"leftovers of {old.tag} to end")
    wait_for(pruned, timeout=10, what="entries of the killed run pruned")


def _assert_all_up(run: TaggedUp) -> None:
    """Every instance registered, each with a pid of this run."""
    now = run.wait_registered(*IDS, timeout=30)
    assert set(now) == set(IDS)
    assert {i["pid"] for i in now.values()} <= set(run.started())


def test_kill_9_of_up_while_starting_and_stopping_orphans_nothing(
    tmp_path: Path, rng: random.Random, runs: list[Up]
) -> None:
    (tmp_path / "slow.py").write_text(SLOW)
    run = TaggedUp(tmp_path, _config("30s"), new_tag())
    runs.append(run)

    # Each next run is killed in turn while it starts, after it cleaned up.
    for _ in range(START_KILLS):
        count = rng.randint(1, 5)
        wait_for(lambda r=run, n=count: len(r.started()) >= n, timeout=20)
        time.sleep(rng.uniform(0.0, 0.3))  # a random point of the start
        before = _kill_supervisor(run)
        assert "last-1" not in run.instances(), "killed after the start ended"
        _assert_children_die(run, before)

        nxt = TaggedUp(tmp_path, _config("30s"), new_tag())
        runs.append(nxt)
        _assert_leftovers_end(run, before, nxt)
        run = nxt
    _assert_all_up(run)

    # Mid-stop: `last` and `after` are stopped first; `slow` ignores SIGTERM
    # and has 30 s of grace, so the kill lands while the stop is under way.
    slow_pid = run.instances()["slow-1"]["pid"]
    run.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "last-1" not in run.instances(), timeout=10, what="stopping")
    time.sleep(rng.uniform(0.0, 0.5))
    assert run.proc.poll() is None and psutil.pid_exists(slow_pid)
    before = _kill_supervisor(run)
    _assert_children_die(run, before)

    final = TaggedUp(tmp_path, _config("1s"), new_tag())
    runs.append(final)
    _assert_leftovers_end(run, before, final)
    _assert_all_up(final)
    before = _processes_of(final)
    assert final.signal(signal.SIGTERM) == 0
    assert not alive(before) and not alive(tagged(final.tag))
    assert final.instances() == {}
    assert not any(alive(tagged(r.tag)) for r in runs if isinstance(r, TaggedUp))
