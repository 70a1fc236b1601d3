"""The instance state machine against scripted children (spawn seam)."""

from __future__ import annotations

import itertools
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from registry import FileRegistry
from supervisor import output
from supervisor.instance import Hooks, Instance, Launch
from supervisor.model import Backoff, ServiceConfig
from tests.support import wait_for

# Above Linux's PID_MAX_LIMIT (2**22): a signal to such a pid reaches nobody.
_pids = itertools.count(5_000_000)


class ScriptedChild:
    """A stand-in for Popen that exits with a given code when told to."""

    def __init__(self, code: int, at_once: bool) -> None:
        self.pid = next(_pids)
        self.stdout = None
        self.returncode: int | None = None
        self._code = code
        self._done = threading.Event()
        if at_once:
            self._done.set()

    def wait(self, timeout: float | None = None) -> int:
        self._done.wait(timeout)
        self.returncode = self._code
        return self._code

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, _sig: int) -> None:
        self._code = -15
        self._done.set()

    def kill(self) -> None:
        self.send_signal(9)


def _instance(tmp_path: Path, codes: list[int], **service: Any) -> Instance:
    config = ServiceConfig(name="job", command=["job"], working_dir=tmp_path)
    config = replace(config, backoff=Backoff(initial=0.01, max=0.05), **service)
    children = iter(codes)
    spawned: list[ScriptedChild] = []

    def spawn(argv: list[str], env: dict[str, str], cwd: str) -> Any:
        code = next(children, None)
        child = ScriptedChild(0 if code is None else code, at_once=code is not None)
        spawned.append(child)
        return child

    hooks = Hooks(
        prepare=lambda inst: Launch([], {}, str(tmp_path), [], {}),
        spawn=spawn,
        registry=FileRegistry(tmp_path / "registry.json"),
        printer=output.Printer(),
        log_file=output.RotatingLog(tmp_path / "job-1.log"),
        changed=lambda inst: None,
    )
    return Instance(config, 1, hooks)


def _settle(inst: Instance, state: str) -> None:
    wait_for(lambda: inst.status().state == state, what=f"state {state}")


def test_on_failure_runs_1_plus_max_restarts_then_fails(tmp_path: Path) -> None:
    inst = _instance(tmp_path, [1, 1, 1, 1, 1], max_restarts=2)

    inst.start()
    _settle(inst, "failed")

    status = inst.status()
    assert (status.runs, status.restarts, status.exit_code) == (3, 2, 1)
    assert status.reason == "exited with code 1 after 3 runs"


def test_on_failure_recovers_when_a_run_succeeds(tmp_path: Path) -> None:
    inst = _instance(tmp_path, [1, 1, 0], max_restarts=5)

    inst.start()
    _settle(inst, "stopped")

    status = inst.status()
    assert status.completed and status.restarts == 2


@pytest.mark.parametrize(
    ("policy", "state"), [("no", "stopped"), ("always", "stopped")]
)
def test_exit_0_under_no_and_always(tmp_path: Path, policy: str, state: str) -> None:
    inst = _instance(tmp_path, [0, 0, 0], restart=policy, max_restarts=2)

    inst.start()
    _settle(inst, state)

    assert inst.status().restarts == (0 if policy == "no" else 2)


def test_stop_of_a_running_instance_ends_it_as_stopped(tmp_path: Path) -> None:
    inst = _instance(tmp_path, [])  # the child runs until signalled

    inst.start()
    wait_for(lambda: inst.status().pid is not None, what="spawned")
    inst.stop()

    status = inst.status()
    assert (status.state, status.pid, status.completed) == ("stopped", None, False)
