"""Idle cost of a supervisor: CPU share and memory with 20 services running.

corral, honcho, supervisord and the bare spawning script each start the
same 20 TCP servers (see bench/up_compare.py). Once all are ready, this
script samples the launcher's own processes (itself and helpers such as
corral's orphan guard, not the servers) for SECONDS: CPU time used over
wall time, as a share of one core, and resident memory (RSS summed over
those processes, the peak of one-second samples). The launchers run at the
same time, so they are measured over the same seconds of machine load.

    python bench/idle_cost.py [--seconds 60] [--services 20] [--tools-bin DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import print_table, started, wait_until
from up_compare import READY_TIMEOUT, Case, launchers


class Sample:
    """CPU and memory of one launcher: its own process and its helpers.

    Helpers are the launcher's descendants other than the servers it was
    asked to run (corral's orphan guard, shell wrappers): they are part of
    what the launcher costs.
    """

    def __init__(self, root: psutil.Process, server: str):
        self.procs = [root] + [
            p for p in root.children(recursive=True) if not _runs(p, server)
        ]
        self.cpu_start = self.cpu()
        self.peak_main_rss = 0
        self.peak_rss = 0
        self.peak_uss = 0
        self.look()

    def cpu(self) -> float:
        """CPU seconds used so far by all of the launcher's processes."""
        return sum(_cpu(p) for p in self.procs)

    def look(self) -> None:
        """Take one memory sample: RSS of the launcher itself, and RSS and
        USS summed over its processes (USS does not count shared pages
        twice, so it is the fair sum for many small processes)."""
        rss = uss = 0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                info = proc.memory_full_info()
                rss += info.rss
                uss += info.uss
        with contextlib.suppress(psutil.Error):
            main = self.procs[0].memory_info().rss
            self.peak_main_rss = max(self.peak_main_rss, main)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_uss = max(self.peak_uss, uss)

    def cpu_share(self, seconds: float) -> float:
        """CPU seconds used since the start, per wall second (1.0 = one core)."""
        return (self.cpu() - self.cpu_start) / seconds


def _runs(proc: psutil.Process, server: str) -> bool:
    try:
        return server in proc.cmdline()
    except psutil.Error:
        return False


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def measure(args: argparse.Namespace) -> list[tuple[object, ...]]:
    """Start every launcher, wait for all-ready, sample them together."""
    runners = launchers(args)
    samples: dict[str, Sample] = {}
    with contextlib.ExitStack() as stack:
        for label, runner in runners.items():
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            case = Case(folder, args.services)
            launch = runner(case)
            proc = stack.enter_context(
                started(
                    launch.argv,
                    cwd=folder,
                    env=launch.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_until(launch.ready, READY_TIMEOUT)
            samples[label] = Sample(psutil.Process(proc.pid), str(case.server))

        time.sleep(1.0)  # let start-up work (probes, first writes) settle
        for sample in samples.values():
            sample.cpu_start = sample.cpu()
        began = time.monotonic()
        while time.monotonic() - began < args.seconds:
            time.sleep(min(1.0, args.seconds))
            for sample in samples.values():
                sample.look()
        took = time.monotonic() - began
        return [
            (
                label,
                len(s.procs),
                took,
                s.cpu_share(took) * 100,
                s.peak_main_rss / 2**20,
                s.peak_rss / 2**20,
                s.peak_uss / 2**20,
            )
            for label, s in samples.items()
        ]


def main() -> None:
    """Print each launcher's CPU share and peak RSS while idle."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--tools", default="corral,honcho,supervisord,bare")
    parser.add_argument("--tools-bin", help="folder holding honcho and supervisord")
    args = parser.parse_args()
    args.corral_intervals = "0.1"

    rows = measure(args)
    header = (
        "launcher",
        "processes",
        "seconds",
        "CPU % of a core",
        "RSS MiB main",
        "RSS MiB all",
        "USS MiB all",
    )
    title = f"idle cost of the launcher with {args.services} servers (peaks)"
    print_table(title, header, rows)


if __name__ == "__main__":
    main()
