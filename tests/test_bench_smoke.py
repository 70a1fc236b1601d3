"""Each bench script runs its smallest configuration, prints a table, exits 0.

The figures are not checked: on a shared test machine they mean nothing.
What is checked is that the scripts still run against the current code, so
docs/performance.md can always be reproduced.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"

SMALLEST = {
    "watch_latency.py": ["--changes", "3"],
    "watch_compare.py": ["--changes", "3", "--ticker-changes", "2", "--ticker", "0.2"],
    "register_throughput.py": ["--ops", "6", "--writers", "1,2", "--repeat", "1"],
    "scale.py": ["--sizes", "10,100", "--repeat", "2"],
    "up_compare.py": [
        "--sizes", "1", "--repeat", "1", "--tools", "corral,bare",
        "--corral-intervals", "0.1",
    ],
    "idle_cost.py": ["--seconds", "1", "--services", "2", "--tools", "corral,bare"],
    "dead_detect.py": ["--victims", "1"],
}  # fmt: skip


@pytest.mark.timeout(90)
@pytest.mark.parametrize("script", sorted(SMALLEST))
def test_bench_script_prints_a_table(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *SMALLEST[script]],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=80,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    if script == "watch_latency.py":  # a table in a format of its own
        assert "p99 ms" in result.stdout, result.stdout
        return
    assert any(set(line.replace(" ", "")) == {"-"} for line in lines), result.stdout
    assert "load" in lines[-1], result.stdout


def test_every_bench_script_has_a_smoke_run() -> None:
    scripts = {p.name for p in BENCH.glob("*.py")} - {"harness.py"}
    assert scripts == set(SMALLEST)
