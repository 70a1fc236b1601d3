"""Load: 50 services of 2 replicas each come up, stay up, and go down cleanly,
with the registry right at every step.

How long the environment stays up is CORRAL_RELIABILITY_LOAD_SECONDS
(default 20 s, so the reliability files together stay near three minutes on
two shared cores; the issue's minute is `CORRAL_RELIABILITY_LOAD_SECONDS=60`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.reliability_support import TaggedUp, alive, new_tag, tagged
from tests.support import run_corral, wait_for
from tests.up_support import Up

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SERVICES = 50
REPLICAS = 2
#: Services that run a real HTTP server with an http readiness probe; the
#: rest run `sleep` with an auto port, which keeps 2 cores enough.
HTTP_SERVICES = 5
STAY_UP = float(os.environ.get("CORRAL_RELIABILITY_LOAD_SECONDS", "20"))
#: How often the registry is checked while the environment stays up (s).
CHECK_EVERY = 1.0


def _config() -> str:
    lines = ["services:"]
    for n in range(SERVICES):
        lines.append(f"  s{n:02d}:")
        if n < HTTP_SERVICES:
            lines += [
                f"    command: {sys.executable} -m http.server ${{PORT}}"
                " --bind 127.0.0.1",
                '    readiness: {http: "http://127.0.0.1:${PORT}/",'
                " interval: 200ms, retries: 100}",
                '    endpoints: ["http://127.0.0.1:${PORT}"]',
            ]
        else:
            lines.append("    command: sleep 1000")
        lines += ["    port: auto", f"    replicas: {REPLICAS}"]
    return "\n".join(lines) + "\n"


IDS = {f"s{n:02d}-{r}" for n in range(SERVICES) for r in range(1, REPLICAS + 1)}


def _check_registry(run: TaggedUp, complete: bool) -> dict[str, dict[str, Any]]:
    """Every entry is a live child of this run with a port of its own."""
    now = run.instances()
    children = {p.pid for p in psutil.Process(run.proc.pid).children()}
    ports = [e for i in now.values() for e in i["endpoints"]]
    assert set(now) <= IDS
    assert {i["pid"] for i in now.values()} <= children
    assert len(ports) == len(set(ports)) == len(now)
    if complete:
        assert set(now) == IDS
    return now


def test_fifty_services_of_two_replicas_up_steady_and_down(
    tmp_path: Path, runs: list[Up]
) -> None:
    began = time.monotonic()
    run = TaggedUp(tmp_path, _config(), new_tag())
    runs.append(run)

    def all_up() -> bool:
        return len(_check_registry(run, complete=False)) == len(IDS)

    wait_for(all_up, timeout=90, interval=0.2, what="100 instances registered")
    up_took = time.monotonic() - began
    ps = run_corral("ps", "-f", str(run.config), "--json")
    rows = json.loads(ps.stdout)
    assert {r["id"] for r in rows} == IDS
    assert {r["state"] for r in rows} == {"ready"}
    pids = {i["pid"] for i in run.instances().values()}
    procs = [psutil.Process(p) for p in pids]

    # Stay up: at every check the same 100 processes, the same entries.
    deadline = time.monotonic() + STAY_UP
    checks = 0
    while time.monotonic() < deadline:
        with pytest.raises(subprocess.TimeoutExpired):
            run.proc.wait(
                timeout=min(CHECK_EVERY, max(0.01, deadline - time.monotonic()))
            )
        now = _check_registry(run, complete=True)
        assert {i["pid"] for i in now.values()} == pids
        assert len(alive(procs)) == len(IDS)
        checks += 1
    for instance in now.values():
        if instance["endpoints"][0].startswith("http://"):
            with urllib.request.urlopen(instance["endpoints"][0], timeout=5) as got:
                assert got.status == 200

    rows = json.loads(run_corral("ps", "-f", str(run.config), "--json").stdout)
    assert sum(int(r["restarts"]) for r in rows) == 0

    began = time.monotonic()
    everything = tagged(run.tag)
    assert run.signal(signal.SIGTERM) == 0
    down_took = time.monotonic() - began
    assert run.instances() == {}
    assert not alive(everything) and not alive(tagged(run.tag))
    print(
        f"{len(IDS)} instances: up in {up_took:.1f} s, {checks} checks over "
        f"{STAY_UP:g} s, down in {down_took:.1f} s"
    )
