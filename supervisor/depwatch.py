"""`on_dependency_change`: act on a dependent when the set of endpoints of
one of its dependencies changes (SPEC §3.4).

One registry watcher per (dependent, dependency) pair. A change counts
only when the dependency's endpoints form a new, non-empty set: a restart
that brings the same endpoints back, a heartbeat, or the moment between
an old instance leaving and its successor arriving does nothing, so a
dependency restarting on a new port triggers exactly one action.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterable
from typing import Protocol

from registry import Registry, ServiceInstance
from registry.errors import RegistryError, WatcherStopped
from registry.watch import Watcher
from supervisor.model import ProjectConfig

log = logging.getLogger(__name__)

#: Seconds without further change before a burst of changes is acted on,
#: so replicas restarting one after another cause one action, not several.
SETTLE = 0.3


class DependentActions(Protocol):
    """What the watcher needs from the runtime."""

    def restart_service(self, name: str) -> None:
        """Restart every instance of `name` (it reads fresh endpoints)."""

    def signal_service(self, name: str, signum: int) -> None:
        """Send `signum` once to every running instance of `name`."""

    def is_running(self, name: str) -> bool:
        """Whether `name` has an instance starting, ready or restarting."""


def signal_number(policy: str) -> int | None:
    """The signal an `on_dependency_change` value names, or None if none.

    Accepts `SIGHUP` and `HUP` alike; a name this platform lacks is None.
    """
    name = policy.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        return None


def endpoint_set(instances: Iterable[ServiceInstance]) -> frozenset[str]:
    """Every endpoint of these instances, as a set."""
    return frozenset(e for inst in instances for e in inst.endpoints)


class DependencyWatcher:
    """Follows the dependencies of services whose policy is not `ignore`."""

    def __init__(
        self,
        config: ProjectConfig,
        registry: Registry,
        actions: DependentActions,
        settle: float = SETTLE,
    ):
        self.config = config
        self.registry = registry
        self.actions = actions
        self.settle = settle
        self._watchers: list[Watcher] = []
        self._threads: list[threading.Thread] = []
        # (dependent, dependency) -> the endpoints last dealt with.
        self._seen: dict[tuple[str, str], frozenset[str]] = {}
        self._progress = threading.Condition()

    def start(self) -> DependencyWatcher:
        """Start one watcher thread per (dependent, dependency) pair.

        What the registry holds when this returns is the baseline: only a
        later, different set of endpoints is acted on.
        """
        for service in self.config.enabled().values():
            if service.on_dependency_change == "ignore":
                continue
            for dep in service.depends_on:
                watcher = self.registry.watch(dep.service)
                self._watchers.append(watcher)
                baseline = endpoint_set(watcher.next() or [])
                self._mark(service.name, dep.service, baseline)
                thread = threading.Thread(
                    target=self._follow,
                    args=(service.name, dep.service, watcher, baseline),
                    name=f"corral-depwatch-{service.name}-{dep.service}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()
        return self

    def caught_up(self, dependencies: Iterable[str], timeout: float) -> bool:
        """Wait until every dependent of these services has dealt with the
        endpoints the registry holds now (acted, or decided not to).

        Lets `corral restart api` return only once api's dependents reacted.
        Returns False if that took longer than `timeout` seconds.
        """
        wanted = set(dependencies)
        pairs = [pair for pair in self._seen if pair[1] in wanted]
        now = {dep: endpoint_set(self.registry.get_service(dep)) for _, dep in pairs}
        with self._progress:
            return self._progress.wait_for(
                lambda: all(self._seen[pair] == now[pair[1]] for pair in pairs),
                timeout,
            )

    def _mark(self, dependent: str, dependency: str, seen: frozenset[str]) -> None:
        with self._progress:
            self._seen[(dependent, dependency)] = seen
            self._progress.notify_all()

    def close(self) -> None:
        """Stop every watcher and wait briefly for the threads to end."""
        for watcher in self._watchers:
            watcher.stop()
        for thread in self._threads:
            thread.join(timeout=5)

    def _follow(
        self,
        dependent: str,
        dependency: str,
        watcher: Watcher,
        baseline: frozenset[str],
    ) -> None:
        try:
            while True:
                current = endpoint_set(self._settled(watcher))
                # An empty set means the dependency is down: there is nothing
                # new to hand over, so wait for its successor instead.
                if current and current != baseline:
                    if baseline:
                        self._act(dependent, dependency, current)
                    baseline = current
                self._mark(dependent, dependency, current)
        except WatcherStopped:
            log.debug("stopped following %s for %s", dependency, dependent)
        except RegistryError as exc:
            log.warning(
                "on_dependency_change of %s: cannot follow %s: %s",
                dependent,
                dependency,
                exc,
            )

    def _settled(self, watcher: Watcher) -> list[ServiceInstance]:
        """The next change, once no further change came for `settle` s."""
        instances = watcher.next() or []
        while (more := watcher.next(timeout=self.settle)) is not None:
            instances = more
        return instances

    def _act(self, dependent: str, dependency: str, endpoints: frozenset[str]) -> None:
        if not self.actions.is_running(dependent):
            log.debug("%s is not running; not acting on %s", dependent, dependency)
            return

        policy = self.config.services[dependent].on_dependency_change
        listed = ",".join(sorted(endpoints))
        if policy == "restart":
            log.info("restarting %s: %s moved to %s", dependent, dependency, listed)
            self.actions.restart_service(dependent)
            return

        signum = signal_number(policy)
        if signum is None:
            log.warning("on_dependency_change of %s: no signal %s", dependent, policy)
            return
        log.info(
            "sending %s to %s: %s moved to %s", policy, dependent, dependency, listed
        )
        self.actions.signal_service(dependent, signum)
