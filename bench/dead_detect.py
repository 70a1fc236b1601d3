"""Time from kill -9 of a registered process to its entry leaving the file.

Two kinds of registrant, both under one running `corral up`:

- supervised: a TCP server that corral started and registered; corral's
  waiter sees the exit and deregisters it;
- unsupervised: a process that registered itself with its own pid; only
  the supervisor's pruning loop (every PRUNE_INTERVAL s) removes it.

Each victim is killed after a random pause, so that kills do not fall in
step with the pruning loop, and the registry file is read every 2 ms
until its entry is gone.

    python bench/dead_detect.py [--victims 20]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import percentile, print_table, python, repo_env, started, wait_until
from up_compare import READY_TIMEOUT, Case, corral_up

from registry import FileRegistry
from supervisor.run import PRUNE_INTERVAL

#: Seconds an entry may take to leave before the sample counts as a failure.
GONE_TIMEOUT = 10.0

REGISTRANT = """
import os, sys, time
from registry import FileRegistry, ServiceInstance
FileRegistry(sys.argv[1]).register(
    ServiceInstance(id=sys.argv[2], name="external", pid=os.getpid()))
print("ready", flush=True)
time.sleep(600)
"""


def supervised(registry: FileRegistry, pause: float) -> list[float]:
    """Kill each corral-started server in turn; delays until deregistered."""
    delays = []
    services = registry.list_services()
    services.pop("external", None)
    for name, entries in sorted(services.items()):
        pid = entries[0].pid
        if pid is None:
            raise SystemExit(f"{name} was registered without a pid")
        time.sleep(random.uniform(0, pause))
        delays.append(_kill_and_time(registry, name, entries[0].id, pid))
    return delays


def unsupervised(registry: FileRegistry, victims: int, pause: float) -> list[float]:
    """Start registrants of their own, kill each; delays until pruned."""
    env = repo_env()
    delays = []
    with contextlib.ExitStack() as stack:
        procs = []
        for index in range(victims):
            argv = [python(), "-c", REGISTRANT, str(registry.path), f"ext-{index}"]
            proc = stack.enter_context(
                started(argv, stdout=subprocess.PIPE, text=True, env=env)
            )
            procs.append(proc)
        for index, proc in enumerate(procs):
            if proc.stdout is None or proc.stdout.readline().strip() != "ready":
                raise SystemExit("a registrant did not start")
            time.sleep(random.uniform(0, pause))
            delays.append(_kill_and_time(registry, "external", f"ext-{index}", proc))
    return delays


def _kill_and_time(
    registry: FileRegistry, name: str, ident: str, victim: int | subprocess.Popen[str]
) -> float:
    # A Popen of ours is reaped at once, as a real parent would; a pid
    # belongs to corral's child, which corral reaps.
    if isinstance(victim, int):
        os.kill(victim, signal.SIGKILL)
    else:
        victim.kill()
    killed = time.monotonic()
    if not isinstance(victim, int):
        victim.wait()

    def gone() -> bool:
        return all(i.id != ident for i in registry.get_service(name))

    return wait_until(gone, GONE_TIMEOUT, step=0.002) - killed


def main() -> None:
    """Run both kinds under one supervisor and print the delays."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victims", type=int, default=20, help="of each kind")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        case = Case(Path(folder), args.victims)
        launch = corral_up(case, 0.1)
        config = (Path(folder) / "corral.yaml").read_text()
        (Path(folder) / "corral.yaml").write_text(
            config.replace(
                "    stop_grace_period", "    restart: 'no'\n    stop_grace_period"
            )
        )
        registry = FileRegistry(Path(folder) / "registry.json")
        with started(
            launch.argv,
            cwd=folder,
            env=launch.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ):
            wait_until(launch.ready, READY_TIMEOUT)
            # Registrants first: corral up ends once all its children are dead.
            outside = unsupervised(registry, args.victims, PRUNE_INTERVAL)
            inside = supervised(registry, 0.2)

    rows = [
        (
            label,
            len(d),
            percentile(d, 0.5) * 1e3,
            percentile(d, 0.99) * 1e3,
            max(d) * 1e3,
            target,
        )
        for label, d, target in (
            ("supervised child", inside, 200),
            ("unsupervised registrant", outside, PRUNE_INTERVAL * 1e3 + 200),
        )
    ]
    header = ("kill -9 of", "kills", "p50 ms", "p99 ms", "max ms", "target ms")
    print_table(
        f"kill -9 -> entry gone (prune interval {PRUNE_INTERVAL:g} s)", header, rows
    )


if __name__ == "__main__":
    main()
