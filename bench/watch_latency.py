"""How long a watcher in another process takes to see a registration.

Runs a watcher of one service in a child process, changes that service
CHANGES times from this process, and prints the p50 and p99 of the delay
from register() returning to the child's watcher yielding, for the
event-driven watcher and for the polling fallback.

    python bench/watch_latency.py [--changes 200] [--poll-interval 0.05]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from registry import FileRegistry, ServiceInstance  # noqa: E402

# The child prints "ready" once its first next() returned, then one line
# "<seq> <monotonic time>" per change it is given. time.monotonic() reads a
# clock shared by all processes of the machine.
CHILD = """
import sys, time
from registry import FileRegistry
path, polling, interval = sys.argv[1], sys.argv[2] == "poll", float(sys.argv[3])
watcher = FileRegistry(path).watch("bench", polling=polling, poll_interval=interval)
watcher.next()
print("ready", flush=True)
for instances in watcher:
    now = time.monotonic()
    seq = instances[0].metadata.get("seq", "-") if instances else "-"
    print(seq, now, flush=True)
"""


def measure(path: Path, mode: str, changes: int, interval: float) -> list[float]:
    """Delays in seconds of `changes` registrations seen by a child watcher."""
    reg = FileRegistry(path)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), mode, str(interval)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    if child.stdout is None:
        raise SystemExit("no pipe from the watcher process")
    try:
        if child.stdout.readline().strip() != "ready":
            raise SystemExit("the watcher process did not start")
        return [_one_change(reg, child.stdout, seq) for seq in range(changes)]
    finally:
        child.kill()
        child.wait()


def _one_change(reg: FileRegistry, lines: IO[str], seq: int) -> float:
    # A random pause first, so changes do not fall in step with a poll.
    time.sleep(random.uniform(0, 0.05))
    instance = ServiceInstance(id="bench-1", name="bench", metadata={"seq": str(seq)})
    reg.register(instance)
    returned = time.monotonic()

    line = lines.readline()
    seen_seq, seen_at = line.split()
    if seen_seq != str(seq):
        raise SystemExit(f"watcher saw change {seen_seq}, expected {seq}")
    return float(seen_at) - returned


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the sorted values lie."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--poll-interval", type=float, default=0.05)
    args = parser.parse_args()

    print(f"{args.changes} changes per mode, delay register() -> watcher yield")
    print(f"{'watcher':<22}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    with tempfile.TemporaryDirectory() as folder:
        for mode, label in (
            ("events", "events (watchfiles)"),
            ("poll", f"polling {args.poll_interval:g} s"),
        ):
            path = Path(folder) / f"{mode}.json"
            delays = measure(path, mode, args.changes, args.poll_interval)
            figures = (percentile(delays, 0.5), percentile(delays, 0.99), max(delays))
            print(f"{label:<22}" + "".join(f"{f * 1e3:>10.1f}" for f in figures))


if __name__ == "__main__":
    main()
