"""Idle cost of a supervisor: CPU share and memory with 20 services running.

corral, honcho, supervisord and the bare spawning script each start the
same 20 TCP servers (see bench/up_compare.py). Once all are ready, this
script samples the launcher process itself (not its children) for SECONDS:
CPU time used over wall time, as a share of one core, and its resident
memory (RSS, the peak of one-second samples). The launchers run at the
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
    """CPU and memory figures of one running launcher."""

    def __init__(self, proc: psutil.Process):
        self.proc = proc
        self.cpu_start = _cpu(proc)
        self.peak_rss = proc.memory_info().rss

    def look(self) -> None:
        """Take one memory sample."""
        self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)

    def cpu_share(self, seconds: float) -> float:
        """CPU seconds used since the start, per wall second (1.0 = one core)."""
        return (_cpu(self.proc) - self.cpu_start) / seconds


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def measure(args: argparse.Namespace) -> list[tuple[object, ...]]:
    """Start every launcher, wait for all-ready, sample them together."""
    runners = launchers(args)
    samples: dict[str, Sample] = {}
    with contextlib.ExitStack() as stack:
        for label, runner in runners.items():
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            launch = runner(Case(folder, args.services))
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
            samples[label] = Sample(psutil.Process(proc.pid))

        time.sleep(1.0)  # let start-up work (probes, first writes) settle
        for sample in samples.values():
            sample.cpu_start = _cpu(sample.proc)
        began = time.monotonic()
        while time.monotonic() - began < args.seconds:
            time.sleep(min(1.0, args.seconds))
            for sample in samples.values():
                sample.look()
        took = time.monotonic() - began
        return [
            (label, args.services, took, s.cpu_share(took) * 100, s.peak_rss / 2**20)
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
    header = ("launcher", "services", "seconds", "CPU % of a core", "peak RSS MiB")
    print_table("idle cost of the launcher process itself", header, rows)


if __name__ == "__main__":
    main()
