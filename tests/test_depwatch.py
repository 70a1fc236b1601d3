"""on_dependency_change against a real registry file: act once per new set
of endpoints, never on a rewrite, a gap or a first appearance."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry import FileRegistry, ServiceInstance
from supervisor.config import load_config
from supervisor.depwatch import DependencyWatcher, signal_number

CONFIG = """\
registry: .corral/registry.json
services:
  api: {command: python -V}
  restarter:
    command: python -V
    depends_on: [api]
    on_dependency_change: restart
  hupper:
    command: python -V
    depends_on: [api]
    on_dependency_change: SIGTERM
  quiet:
    command: python -V
    depends_on: [api]
    on_dependency_change: ignore
  stopped:
    command: python -V
    depends_on: [api]
    on_dependency_change: restart
"""


class Recorder:
    """DependentActions that write down what they were asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.changed = threading.Condition()

    def _add(self, call: tuple[str, str]) -> None:
        with self.changed:
            self.calls.append(call)
            self.changed.notify_all()

    def restart_service(self, name: str) -> None:
        self._add(("restart", name))

    def signal_service(self, name: str, signum: int) -> None:
        self._add((signal.Signals(signum).name, name))

    def is_running(self, name: str) -> bool:
        return name != "stopped"

    def wait_count(self, count: int, timeout: float = 10.0) -> list[tuple[str, str]]:
        with self.changed:
            done = self.changed.wait_for(lambda: len(self.calls) >= count, timeout)
            assert done, f"expected {count} calls, got {self.calls}"
            return sorted(self.calls)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[FileRegistry, Recorder]]:
    path = tmp_path / "corral.yaml"
    path.write_text(CONFIG)
    config = load_config(path)
    registry = FileRegistry(tmp_path / ".corral" / "registry.json")
    registry.register(api(1001))  # what the dependents started with
    recorder = Recorder()
    watcher = DependencyWatcher(config, registry, recorder, settle=0.1).start()
    yield registry, recorder
    watcher.close()


def api(port: int) -> ServiceInstance:
    return ServiceInstance(
        id="api-1", name="api", endpoints=[f"http://127.0.0.1:{port}"]
    )


def test_a_new_set_of_endpoints_acts_once(
    setup: tuple[FileRegistry, Recorder],
) -> None:
    registry, recorder = setup
    registry.deregister(api(1001))  # a restart: gone, then back elsewhere
    registry.register(api(1002))
    assert recorder.wait_count(2) == [("SIGTERM", "hupper"), ("restart", "restarter")]

    # A rewrite of the same record, and a restart on the same endpoint, are
    # not changes; the next real change is the only one that counts.
    registry.register(api(1002))
    registry.deregister(api(1002))
    registry.register(api(1002))
    registry.register(api(1003))
    calls = recorder.wait_count(4)
    assert calls.count(("restart", "restarter")) == 2
    assert calls.count(("SIGTERM", "hupper")) == 2
    assert len(calls) == 4, calls
    assert not [c for c in calls if c[1] in ("quiet", "stopped")]


def test_signal_names_with_and_without_prefix() -> None:
    assert signal_number("SIGTERM") == int(signal.SIGTERM)
    assert signal_number("term") == int(signal.SIGTERM)
    assert signal_number("SIGNOPE") is None
