"""Time from launch to all-ready for 1, 10 and 50 trivial TCP services.

The same tiny Python TCP server is started N times by each launcher:

- corral `up` with a tcp readiness probe: all-ready is when the registry
  file lists all N instances (corral registers an instance once its probe
  passes), one row per probe interval asked for;
- honcho and supervisord: all-ready is when all N ports accept, polled by
  this script every 5 ms;
- a bare Python script that spawns the N servers at once (the floor),
  judged by its ports in the same way.

Every launcher's time includes its own interpreter start. Each case runs
REPEAT times; the table gives the median and the ratio to the floor.

    python bench/up_compare.py [--sizes 1,10,50] [--repeat 3]
        [--tools corral,honcho,supervisord,bare] [--tools-bin DIR]

honcho and supervisord come from bench/requirements.txt; install them in
a separate virtual environment (PyPI's `supervisor` package has the same
import name as corral's) and pass its bin folder as --tools-bin.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    free_ports,
    median,
    port_open,
    print_table,
    python,
    repo_env,
    started,
    wait_until,
)

from registry import FileRegistry

#: Seconds one launch may take before the case counts as failed.
READY_TIMEOUT = 60.0

SERVER = """
import socket, sys
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen(16)
while True:
    sock.accept()[0].close()
"""

# The floor: start every server at once, then wait to be ended.
BARE = """
import signal, subprocess, sys
python, server = sys.argv[1], sys.argv[2]
children = [subprocess.Popen([python, server, port]) for port in sys.argv[3:]]
signal.sigwait([signal.SIGTERM, signal.SIGINT])
for child in children:
    child.terminate()
"""


class Case:
    """One launch: a folder with the server script and N fixed ports."""

    def __init__(self, folder: Path, count: int):
        self.folder = folder
        self.ports = free_ports(count)
        self.server = folder / "server.py"
        self.server.write_text(SERVER)

    def all_ports_open(self) -> Callable[[], bool]:
        """A test that passes once every port accepted a connection."""
        waiting = set(self.ports)

        def test() -> bool:
            waiting.difference_update([p for p in list(waiting) if port_open(p)])
            return not waiting

        return test


class Launch(NamedTuple):
    """How to start one launcher, and the test that it is all ready."""

    argv: list[str]
    ready: Callable[[], bool]
    env: dict[str, str] | None = None


def corral_up(case: Case, interval: float) -> Launch:
    """`corral up` with a tcp probe; ready once the registry lists all N."""
    lines = ["registry: registry.json", "services:"]
    for index, port in enumerate(case.ports):
        lines += [
            f"  s{index}:",
            f"    command: {python()} {case.server} ${{PORT}}",
            f"    port: {port}",
            f"    readiness: {{tcp: '127.0.0.1:${{PORT}}', interval: {interval},",
            f"                 retries: {_retries(interval)}}}",
            "    stop_grace_period: 2s",
        ]
    config = case.folder / "corral.yaml"
    config.write_text("\n".join(lines) + "\n")
    registry = FileRegistry(case.folder / "registry.json")
    count = len(case.ports)

    def all_registered() -> bool:
        return sum(map(len, registry.list_services().values())) == count

    argv = [python(), "-m", "supervisor", "up", "-f", str(config)]
    return Launch(argv, all_registered, repo_env())


def _retries(interval: float) -> int:
    """Enough probe failures to allow READY_TIMEOUT, whatever the interval."""
    return max(30, int(READY_TIMEOUT / interval))


def honcho_start(case: Case, tool: str) -> Launch:
    """`honcho start` of a Procfile; ready once all ports accept."""
    procfile = case.folder / "Procfile"
    procfile.write_text(
        "".join(
            f"s{i}: {python()} {case.server} {port}\n"
            for i, port in enumerate(case.ports)
        )
    )
    return Launch([tool, "start", "-f", str(procfile)], case.all_ports_open())


def supervisord_start(case: Case, tool: str) -> Launch:
    """`supervisord -n` with one program per server; ready once all ports
    accept."""
    sections = [
        "[supervisord]\nnodaemon=true\nlogfile=%(here)s/supervisord.log\n"
        "pidfile=%(here)s/supervisord.pid\nchildlogdir=%(here)s\n"
    ]
    sections += [
        f"[program:s{i}]\ncommand={python()} {case.server} {port}\n"
        "startsecs=0\nautorestart=false\nstopwaitsecs=2\n"
        for i, port in enumerate(case.ports)
    ]
    config = case.folder / "supervisord.conf"
    config.write_text("\n".join(sections))
    return Launch([tool, "-n", "-c", str(config)], case.all_ports_open())


def bare_spawn(case: Case) -> Launch:
    """A bare script that spawns every server at once (the floor)."""
    argv = [python(), "-c", BARE, python(), str(case.server)]
    return Launch(argv + [str(p) for p in case.ports], case.all_ports_open())


def time_launch(launch: Launch, folder: Path) -> float:
    """Seconds from starting the launcher to its all-ready test passing."""
    began = time.monotonic()
    with started(
        launch.argv,
        cwd=folder,
        env=launch.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as proc:
        at = wait_until(lambda: proc.poll() is None and launch.ready(), READY_TIMEOUT)
    return at - began


def launchers(args: argparse.Namespace) -> dict[str, Callable[[Case], Launch]]:
    """The launchers asked for that are installed, by row label.

    `args` needs `tools`, `corral_intervals` and `tools_bin`.
    """
    wanted = args.tools.split(",")
    found: dict[str, Callable[[Case], Launch]] = {}
    if "bare" in wanted:
        found["bare spawn (floor)"] = bare_spawn
    if "corral" in wanted:
        intervals = [float(i) for i in args.corral_intervals.split(",")]
        for interval in intervals:
            label = f"corral (probe every {interval:g} s)"
            label = label if len(intervals) > 1 else "corral"
            found[label] = lambda case, i=interval: corral_up(case, i)
    for name, runner in (("honcho", honcho_start), ("supervisord", supervisord_start)):
        if name not in wanted:
            continue
        tool = shutil.which(name, path=args.tools_bin) or shutil.which(name)
        if tool is None:
            print(f"{name} not found: skipped (pip install -r bench/requirements.txt)")
            continue
        found[name] = lambda case, r=runner, t=tool: r(case, t)
    return found


def main() -> None:
    """Run every launcher at every size REPEAT times; print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,50")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tools", default="corral,honcho,supervisord,bare")
    parser.add_argument("--corral-intervals", default="1,0.1,0.01")
    parser.add_argument("--tools-bin", help="folder holding honcho and supervisord")
    args = parser.parse_args()
    runners = launchers(args)

    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        times = {label: [] for label in runners}
        for _ in range(args.repeat):  # interleaved, so load drifts hit all alike
            for label, run in runners.items():
                with tempfile.TemporaryDirectory() as folder:
                    launch = run(Case(Path(folder), size))
                    times[label].append(time_launch(launch, Path(folder)))
        floor = median(times.get("bare spawn (floor)", []))
        for label, values in times.items():
            rows.append(
                (label, size, median(values), min(values), median(values) / floor)
            )

    header = ("launcher", "services", "median s", "min s", "x floor")
    print_table(f"launch to all-ready, {args.repeat} runs each", header, rows)


if __name__ == "__main__":
    main()
