"""Supervision by `corral up` with real processes: probes and conditions,
restarts with backoff, tree stops, orphans, pruning, hostile output."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.support import corral_env, run_corral, wait_for
from tests.up_support import Up, elapsed_until, gone

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

PY = sys.executable


def _script(folder: Path, name: str, code: str) -> str:
    path = folder / name
    path.write_text(textwrap.dedent(code))
    return f"{PY} {path}"


def _create_time(pid: int) -> float:
    return psutil.Process(pid).create_time()


def test_unknown_service_is_a_usage_error_before_anything_starts(
    tmp_path: Path,
) -> None:
    config = tmp_path / "corral.yaml"
    config.write_text("services:\n  idle:\n    command: sleep 1000\n")

    result = run_corral("up", "-f", str(config), "nosuch", cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"corral: {config}: no enabled service named nosuch (services: idle)"
    ]
    assert result.stdout == ""
    assert not (tmp_path / ".corral" / "logs").exists()
    assert not (tmp_path / ".corral" / "registry.json").exists()


def test_readiness_gates_registration_and_service_healthy(
    tmp_path: Path, runs: list[Up]
) -> None:
    slow = _script(
        tmp_path,
        "slow.py",
        """
        import http.server, os, time
        time.sleep(2)
        address = ("127.0.0.1", int(os.environ["PORT"]))
        server = http.server.ThreadingHTTPServer(
            address, http.server.SimpleHTTPRequestHandler)
        server.serve_forever()
        """,
    )
    config = f"""
    services:
      slow:
        command: {slow}
        port: auto
        readiness:
          {{http: "http://127.0.0.1:${{PORT}}/", interval: 100ms, retries: 100}}
      after:
        command: sleep 1000
        depends_on: {{slow: {{condition: service_healthy}}}}
    """
    run = Up(tmp_path, textwrap.dedent(config))
    runs.append(run)

    slow_pid = wait_for(lambda: _pid_of(run, "slow-1"), what="slow started")
    wait_for(lambda: "slow-1" in run.instances(), what="slow registered")
    seen = time.time()
    after = run.wait_registered("after-1")["after-1"]["pid"]

    assert seen - _create_time(slow_pid) >= 2.0
    assert _create_time(after) - _create_time(slow_pid) >= 2.0


def test_ps_shows_a_dependent_that_waits_as_starting(
    tmp_path: Path, runs: list[Up]
) -> None:
    config = """
    services:
      base:
        command: sleep 1000
        readiness: {exec: "test -f go", interval: 50ms, retries: 10000}
      after:
        command: sleep 1000
        depends_on: {base: {condition: service_healthy}}
    """
    run = Up(tmp_path, textwrap.dedent(config))
    runs.append(run)
    wait_for(lambda: _pid_of(run, "base-1"), what="base started")

    result = run_corral("ps", "-f", str(run.config), "--json", cwd=tmp_path)
    states = {row["id"]: row["state"] for row in json.loads(result.stdout)}
    (tmp_path / "go").touch()

    assert states == {"base-1": "starting", "after-1": "starting"}
    run.wait_registered("after-1")


def _pid_of(run: Up, ident: str) -> int | None:
    """The pid of the child that corral printed as started for `ident`."""
    for line in run.output().splitlines():
        if line.startswith(f"{ident} started with pid "):
            return int(line.rsplit(" ", 1)[1])
    return None


def test_crash_loop_backs_off_then_fails_while_others_run(
    tmp_path: Path, runs: list[Up]
) -> None:
    crash = _script(
        tmp_path,
        "crash.py",
        """
        import time
        with open("runs.txt", "a") as f:
            f.write(f"{time.time()}\\n")
        raise SystemExit(1)
        """,
    )
    config = f"""
    services:
      crash:
        command: {crash}
        restart: on-failure
        max_restarts: 3
        backoff: {{initial: 300ms, max: 10s}}
      steady:
        command: sleep 1000
    """
    run = Up(tmp_path, textwrap.dedent(config))
    runs.append(run)

    steady = run.wait_registered("steady-1")["steady-1"]["pid"]
    wait_for(
        lambda: run.has_line("crash-1 failed for good", "exited with code 1"),
        timeout=20,
        what="crash-1 to fail for good",
    )

    starts = [float(t) for t in (tmp_path / "runs.txt").read_text().split()]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 4
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6 and gaps[2] >= 1.2, gaps
    assert gaps[0] < gaps[1] < gaps[2]
    assert run.proc.poll() is None
    assert run.instances()["steady-1"]["pid"] == steady
    assert "crash-1" not in run.instances()


def test_each_exit_is_one_line_and_a_signal_is_named(
    tmp_path: Path, runs: list[Up]
) -> None:
    config = """
    services:
      api:
        command: sh -c "sleep 0.2; kill -9 $$$$"
        max_restarts: 1
        backoff: {initial: 100ms}
      worker:
        command: sleep 1000
    """
    run = Up(tmp_path, textwrap.dedent(config))
    runs.append(run)
    wait_for(
        lambda: run.has_line("api-1 failed for good"), timeout=20, what="api-1 failed"
    )
    wait_for(
        lambda: "worker-1 ready" in run.output().splitlines(), what="worker-1 ready"
    )

    lines = run.output().splitlines()
    api = [line for line in lines if line.startswith("api-1 ")]
    ends = [line for line in api if "SIGKILL" in line]
    assert len(ends) == 2, api
    assert "api-1 killed by SIGKILL; restarting in 0.1 s" in ends[0]
    assert "after 2 runs: killed by SIGKILL" in ends[1]
    assert not any("-9" in line for line in api), api


def test_a_dependency_that_fails_for_good_fails_its_dependents(
    tmp_path: Path, runs: list[Up]
) -> None:
    config = """
    services:
      broken:
        command: sh -c "exit 3"
        restart: "no"
      needs:
        command: sleep 1000
        depends_on: {broken: {condition: service_healthy}}
    """
    run = Up(tmp_path, textwrap.dedent(config))
    runs.append(run)

    code = run.proc.wait(timeout=20)
    run.signal(signal.SIGTERM)

    assert code == 1
    assert run.has_line("needs-1 failed: dependency 'broken' failed", "code 3")


def test_sigterm_stops_sh_wrapper_trees(tmp_path: Path, runs: list[Up]) -> None:
    config = """
    services:
      tree:
        command: sh -c "sleep 1000 & sleep 1000"
        stop_grace_period: 5s
    """
    run = Up(tmp_path, textwrap.dedent(config))
    runs.append(run)
    run.wait_registered("tree-1")
    pids = wait_for(lambda: len(run.remember()) >= 3 and run.remember(), what="tree")

    assert run.signal(signal.SIGTERM) == 0
    assert gone(pids)
    assert run.instances() == {}


def test_second_ctrl_c_kills_what_ignores_the_first(
    tmp_path: Path, runs: list[Up]
) -> None:
    config = """
    services:
      stubborn:
        command: sh -c "trap '' TERM INT; sleep 1000 & sleep 1000"
        stop_grace_period: 60s
    """
    run = Up(tmp_path, textwrap.dedent(config))
    runs.append(run)
    run.wait_registered("stubborn-1")
    pids = wait_for(lambda: len(run.remember()) >= 3 and run.remember(), what="tree")

    run.proc.send_signal(signal.SIGINT)
    wait_for(lambda: run.has_line("stopping all services"), what="the first stop")
    run.proc.send_signal(signal.SIGINT)

    assert run.proc.wait(timeout=10) == 0
    assert gone(pids)
    assert run.has_line("killing")


def test_children_die_with_a_killed_supervisor_and_next_up_cleans(
    tmp_path: Path, runs: list[Up]
) -> None:
    config = """
    services:
      tree:
        command: sh -c "sleep 1000 & sleep 1000"
      plain:
        command: sleep 1000
    """
    first = Up(tmp_path, textwrap.dedent(config))
    runs.append(first)
    old = first.wait_registered("tree-1", "plain-1")
    old_pids = {old["tree-1"]["pid"], old["plain-1"]["pid"]}
    everything = wait_for(lambda: len(first.remember()) >= 4 and first.remember())

    first.proc.kill()
    first.proc.wait(5)
    took = elapsed_until(lambda: gone(list(old_pids)), 2.0, "children to die")
    print(f"supervisor kill -9 to children gone: {took * 1000:.0f} ms")
    took = elapsed_until(lambda: gone(everything), 2.0, "grandchildren to die")
    print(f"supervisor kill -9 to grandchildren gone: {took * 1000:.0f} ms")

    assert {i["pid"] for i in first.instances().values()} == old_pids
    second = Up(tmp_path, textwrap.dedent(config))
    runs.append(second)

    def old_entries() -> set[int]:
        return {i["pid"] for i in second.instances().values()} & old_pids

    wait_for(lambda: not old_entries(), what="old entries pruned")
    second.wait_registered("tree-1", "plain-1")


def test_entry_of_an_unrelated_dead_process_is_pruned(
    tmp_path: Path, runs: list[Up]
) -> None:
    run = Up(tmp_path, "services:\n  idle:\n    command: sleep 1000\n")
    runs.append(run)
    run.wait_registered("idle-1")
    code = f"""
        import os, time
        from registry import FileRegistry, ServiceInstance
        reg = FileRegistry({str(run.registry_path)!r})
        reg.register(ServiceInstance(id="ext-1", name="ext", pid=os.getpid()))
        time.sleep(1000)
    """
    other = subprocess.Popen([PY, "-c", textwrap.dedent(code)], env=corral_env())
    try:
        wait_for(lambda: "ext-1" in run.instances(), what="ext-1 registered")
        other.kill()
        other.wait(5)
        took = elapsed_until(lambda: "ext-1" not in run.instances(), 2.0, "pruned")
        print(f"unrelated process death to entry pruned: {took * 1000:.0f} ms")
    finally:
        other.kill()
        other.wait(5)


def test_bad_bytes_and_a_5_mb_line_do_not_stop_other_output(
    tmp_path: Path, runs: list[Up]
) -> None:
    noisy = _script(
        tmp_path,
        "noisy.py",
        """
        import sys, time
        time.sleep(0.5)
        out = sys.stdout.buffer
        out.write(b"bad \\xff\\xfe bytes\\n")
        out.write(b"x" * (5 * 1024 * 1024) + b"\\n")
        out.write(b"noisy done\\n")
        out.flush()
        time.sleep(1000)
        """,
    )
    ticker = _script(
        tmp_path,
        "ticker.py",
        """
        import itertools, time
        for n in itertools.count():
            print(f"tick {n}", flush=True)
            time.sleep(0.05)
        """,
    )
    config = f"""
    services:
      noisy: {{command: {noisy}}}
      ticker: {{command: {ticker}}}
    """
    run = Up(tmp_path, textwrap.dedent(config))
    runs.append(run)

    wait_for(lambda: run.has_line("noisy-1", "noisy done"), timeout=20, what="noisy")
    ticks_then = _ticks(run)
    wait_for(lambda: _ticks(run) >= ticks_then + 5, what="ticker to go on")

    assert run.has_line("noisy-1", "bad \ufffd\ufffd bytes")
    assert run.has_line("noisy-1", "more characters in the log")
    log = (tmp_path / ".corral" / "logs" / "noisy-1.log").read_bytes()
    assert b"x" * (5 * 1024 * 1024) + b"\n" in log


def _ticks(run: Up) -> int:
    return sum(1 for line in run.output().splitlines() if "| tick " in line)


def test_fixed_port_in_use_fails_that_service_only(
    tmp_path: Path, runs: list[Up]
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    config = f"""
    services:
      taken: {{command: sleep 1000, port: {port}, restart: "no"}}
      free: {{command: sleep 1000, port: auto}}
    """
    try:
        run = Up(tmp_path, textwrap.dedent(config))
        runs.append(run)
        run.wait_registered("free-1")
        wait_for(
            lambda: run.has_line(f"port {port} of service 'taken' is already in use"),
            what="the port error",
        )
    finally:
        holder.close()


def test_fixed_port_held_by_another_program_fails_at_once(
    tmp_path: Path, runs: list[Up]
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    config = f"""
    services:
      taken: {{command: sleep 1000, port: {port}}}
      free: {{command: sleep 1000}}
    """
    try:
        run = Up(tmp_path, textwrap.dedent(config))
        runs.append(run)
        run.wait_registered("free-1")
        wait_for(
            lambda: run.has_line("taken-1 failed", f"port {port}", "already in use"),
            timeout=5,
            what="taken-1 to fail",
        )

        assert not run.has_line("taken-1", "restarting")
        assert not run.has_line("last exit code None")
        assert run.proc.poll() is None
    finally:
        holder.close()


def test_corrupt_registry_is_moved_aside_and_rebuilt(
    tmp_path: Path, runs: list[Up]
) -> None:
    registry = tmp_path / ".corral" / "registry.json"
    registry.parent.mkdir()
    registry.write_text('{"services": {"x": [')

    run = Up(tmp_path, "services:\n  idle:\n    command: sleep 1000\n")
    runs.append(run)
    run.wait_registered("idle-1")

    aside = list(registry.parent.glob("registry.json.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_text() == '{"services": {"x": ['
    assert run.has_line(str(registry), str(aside[0]))
    assert os.stat(registry).st_mode & 0o777 == 0o600
