"""on_dependency_change against a real registry file: act once per new set
of endpoints, never on a rewrite, a gap or a first appearance."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
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
    """DependentActions that write down what they were asked to do, with
    the endpoints of api that the registry held at that moment."""

    def __init__(self, registry: FileRegistry) -> None:
        self.registry = registry
        self.calls: list[tuple[str, str, str]] = []
        self.changed = threading.Condition()

    def _add(self, action: str, name: str) -> None:
        now = ",".join(e for i in self.registry.get_service("api") for e in i.endpoints)
        with self.changed:
            self.calls.append((action, name, now))
            self.changed.notify_all()

    def restart_service(self, name: str) -> None:
        self._add("restart", name)

    def signal_service(self, name: str, signum: int) -> None:
        self._add(signal.Signals(signum).name, name)

    def is_running(self, name: str) -> bool:
        return name != "stopped"

    def wait_until(self, what: str, predicate: Callable[[], bool]) -> None:
        with self.changed:
            done = self.changed.wait_for(predicate, 10.0)
        assert done, f"timed out waiting for {what}: {self.calls}"

    def seen_names(self) -> set[str]:
        return {who for _action, who, _seen in self.calls}

    def of(self, name: str) -> list[str]:
        """The endpoints seen at each call for the dependent `name`."""
        with self.changed:
            return [seen for _action, who, seen in self.calls if who == name]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[FileRegistry, Recorder]]:
    path = tmp_path / "corral.yaml"
    path.write_text(CONFIG)
    config = load_config(path)
    registry = FileRegistry(tmp_path / ".corral" / "registry.json")
    registry.register(api(1001))  # what the dependents started with
    recorder = Recorder(registry)
    # settle 0: each state the registry passes through is judged on its own.
    watcher = DependencyWatcher(config, registry, recorder, settle=0.0).start()
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
    follow = registry.watch("api")
    follow.next()

    def step(change: Callable[[], None]) -> None:
        # Each state is seen by a watcher before the next, so no step is
        # merged away before the watcher under test could see it.
        change()
        follow.next(timeout=10)

    step(lambda: registry.deregister(api(1001)))  # a restart: gone...
    step(lambda: registry.register(api(1002)))  # ...then back elsewhere
    both = {"restarter", "hupper"}
    recorder.wait_until("one action each", lambda: both <= recorder.seen_names())

    # A rewrite of the same record, and a restart on the same endpoint, are
    # not changes; the next real change is the only other one that counts.
    registry.register(api(1002))
    step(lambda: registry.deregister(api(1002)))
    step(lambda: registry.register(api(1002)))
    step(lambda: registry.register(api(1003)))
    new = "http://127.0.0.1:1003"
    for name in both:
        recorder.wait_until(f"{name} to see 1003", lambda n=name: new in recorder.of(n))
        assert recorder.of(name) == ["http://127.0.0.1:1002", new]
    assert [c[0] for c in recorder.calls if c[1] == "hupper"] == ["SIGTERM"] * 2
    assert recorder.seen_names() == both


def test_signal_names_with_and_without_prefix() -> None:
    assert signal_number("SIGTERM") == int(signal.SIGTERM)
    assert signal_number("term") == int(signal.SIGTERM)
    assert signal_number("SIGNOPE") is None
