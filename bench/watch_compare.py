"""Watch latency across processes: corral's watchers against 1 s polling.

A watcher runs in a child process; this process registers a change and
times how long the child takes to yield it. Three watchers side by side:
corral's event-driven watcher, its polling fallback, and a loop that
re-reads the whole file on a 1 s ticker and compares the service's
instances, which is how the Go Kratos local registry watches.

    python bench/watch_compare.py [--changes 200] [--ticker-changes 40]

The event and polling rows reuse bench/watch_latency.py's child; the
ticker row has its own, below.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import percentile, print_table, python, repo_env, started
from watch_latency import CHILD as CORRAL_CHILD

from registry import FileRegistry, ServiceInstance

# Re-read the file every `period` seconds and print the sequence number of
# the service's instances when they differ from the last read: a loop in
# the manner of the Go reader's ticker.
TICKER_CHILD = """
import json, sys, time
path, period = sys.argv[1], float(sys.argv[3])
def read():
    with open(path) as f:
        return json.load(f).get("services", {}).get("bench", [])
last = read()
print("ready", flush=True)
while True:
    time.sleep(period)
    try:
        now_seen = read()
    except (OSError, ValueError):
        continue
    if now_seen != last:
        stamp = time.monotonic()
        last = now_seen
        seq = now_seen[0]["metadata"].get("seq", "-") if now_seen else "-"
        print(seq, stamp, flush=True)
"""


def measure(
    path: Path, child: str, mode: str, changes: int, period: float, pause: float
) -> list[float]:
    """Delays (s) from register() returning to the child seeing each change.

    Each change comes after a random pause of up to `pause` seconds, so
    that changes do not fall in step with a polling loop.
    """
    reg = FileRegistry(path)
    argv = [python(), "-c", child, str(path), mode, str(period)]
    with started(argv, stdout=subprocess.PIPE, text=True, env=repo_env()) as proc:
        lines = proc.stdout
        if lines is None or lines.readline().strip() != "ready":
            raise SystemExit(f"the {mode} watcher did not start")
        return [_one_change(reg, lines, seq, pause) for seq in range(changes)]


def _one_change(reg: FileRegistry, lines: IO[str], seq: int, pause: float) -> float:
    time.sleep(random.uniform(0, pause))
    reg.register(
        ServiceInstance(id="bench-1", name="bench", metadata={"seq": str(seq)})
    )
    returned = time.monotonic()

    seen_seq, seen_at = lines.readline().split()
    if seen_seq != str(seq):
        raise SystemExit(f"watcher saw change {seen_seq}, expected {seq}")
    return float(seen_at) - returned


def main() -> None:
    """Measure the three watchers and print p50/p99/max and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--ticker-changes", type=int, default=40)
    parser.add_argument("--poll-interval", type=float, default=0.05)
    parser.add_argument("--ticker", type=float, default=1.0)
    args = parser.parse_args()

    kinds = [
        ("events (watchfiles)", CORRAL_CHILD, "events", args.changes, 0.05),
        (f"polling {args.poll_interval:g} s", CORRAL_CHILD, "poll", args.changes, 0.05),
        (
            f"re-read every {args.ticker:g} s",
            TICKER_CHILD,
            "ticker",
            args.ticker_changes,
            args.ticker,
        ),
    ]
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for label, child, mode, changes, pause in kinds:
            period = args.ticker if mode == "ticker" else args.poll_interval
            path = Path(folder) / f"{mode}.json"
            delays = measure(path, child, mode, changes, period, pause)
            results.append((label, changes, delays))

    ticker = results[-1][2]
    rows = [
        (
            label,
            changes,
            percentile(d, 0.5) * 1e3,
            percentile(d, 0.99) * 1e3,
            max(d) * 1e3,
            percentile(ticker, 0.5) / percentile(d, 0.5),
            percentile(ticker, 0.99) / percentile(d, 0.99),
        )
        for label, changes, d in results
    ]
    header = (
        "watcher",
        "changes",
        "p50 ms",
        "p99 ms",
        "max ms",
        "p50 x faster",
        "p99 x faster",
    )
    print_table(
        "watch latency: register() in one process -> yield in another", header, rows
    )


if __name__ == "__main__":
    main()
