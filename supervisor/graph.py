"""The dependency graph of a configuration: checks and start/stop order.

The checks work on a plain mapping of service name to the names it depends
on, so the loader can run them before a ProjectConfig exists and attach a
file position to what they find. The ordering helpers take a ProjectConfig
and consider only enabled services.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Mapping, Sequence

from supervisor.model import ProjectConfig

log = logging.getLogger(__name__)


class DependencyError(ValueError):
    """A `depends_on` entry that cannot be honoured.

    `service` is the service whose `depends_on` is wrong and `dependency`
    the entry at fault; `hint` is the fix where one is known.
    """

    def __init__(self, service: str, dependency: str, message: str, hint: str = ""):
        self.service = service
        self.dependency = dependency
        self.message = message
        self.hint = hint
        super().__init__(message)


def check_dependencies(
    graph: Mapping[str, Sequence[str]], disabled: Iterable[str] = ()
) -> None:
    """Refuse missing, self, disabled and cyclic dependencies.

    `graph` maps each service, in file order, to the services it depends on.
    Raises DependencyError for the first problem found.
    """
    off = set(disabled)
    for service, needs in graph.items():
        for dependency in needs:
            _check_one(graph, off, service, dependency)

    cycle = find_cycle(graph)
    if cycle:
        path = " -> ".join(cycle)
        raise DependencyError(
            cycle[0],
            cycle[1],
            f"dependency cycle: {path}",
            "remove one of these depends_on entries",
        )


def _check_one(
    graph: Mapping[str, Sequence[str]], off: set[str], service: str, dependency: str
) -> None:
    if dependency == service:
        raise DependencyError(
            service, dependency, f"service '{service}' depends on itself"
        )
    if dependency not in graph:
        close = difflib.get_close_matches(dependency, list(graph), n=1)
        hint = f"did you mean '{close[0]}'?" if close else ""
        raise DependencyError(
            service, dependency, f"depends on unknown service '{dependency}'", hint
        )
    if dependency in off and service not in off:
        raise DependencyError(
            service,
            dependency,
            f"depends on service '{dependency}', which is disabled",
            f"enable '{dependency}' or remove the dependency",
        )


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str]:
    """A dependency cycle as `[a, b, a]`, or [] when there is none.

    Services are visited in file order, so the same file always reports the
    same cycle. Unknown names are ignored here.
    """
    done: set[str] = set()
    for root in graph:
        if root in done:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path = [root]
        while stack:
            node, index = stack[-1]
            needs = [d for d in graph.get(node, ()) if d in graph]
            if index == len(needs):
                stack.pop()
                path.pop()
                done.add(node)
                continue

            stack[-1] = (node, index + 1)
            nxt = needs[index]
            if nxt in path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done:
                stack.append((nxt, 0))
                path.append(nxt)
    return []


def dependency_map(config: ProjectConfig) -> dict[str, list[str]]:
    """Each enabled service's dependencies among the enabled services."""
    enabled = config.enabled()
    return {
        name: [d.service for d in service.depends_on if d.service in enabled]
        for name, service in enabled.items()
    }


def start_levels(config: ProjectConfig) -> list[list[str]]:
    """Enabled services grouped so each group can start in parallel.

    Every service comes in a later group than all of its dependencies;
    within a group, file order is kept.
    """
    graph = dependency_map(config)
    placed: dict[str, int] = {}
    levels: list[list[str]] = []
    while len(placed) < len(graph):
        ready = [
            name
            for name, needs in graph.items()
            if name not in placed and all(n in placed for n in needs)
        ]
        if not ready:
            cycle = " -> ".join(find_cycle(graph))
            raise DependencyError("", "", f"dependency cycle: {cycle}")
        for name in ready:
            placed[name] = len(levels)
        levels.append(ready)
    log.debug("start levels: %s", levels)
    return levels


def stop_levels(config: ProjectConfig) -> list[list[str]]:
    """Groups to stop in turn: dependents before their dependencies."""
    return list(reversed(start_levels(config)))


def stop_order(config: ProjectConfig) -> list[str]:
    """Enabled services in an order that stops dependents first."""
    return [name for level in stop_levels(config) for name in level]


def dependents(config: ProjectConfig, service: str) -> list[str]:
    """Enabled services that depend on `service`, directly or transitively.

    In file order; `service` itself is not included.
    """
    graph = dependency_map(config)
    found: set[str] = set()
    frontier = [service]
    while frontier:
        current = frontier.pop()
        for name, needs in graph.items():
            if current in needs and name not in found:
                found.add(name)
                frontier.append(name)
    found.discard(service)
    return [name for name in graph if name in found]


def with_dependencies(config: ProjectConfig, services: Iterable[str]) -> list[str]:
    """`services` and everything they depend on, transitively, in file order.

    What `corral up SERVICE...` has to start. Names that are not enabled
    services are ignored here; the caller reports them.
    """
    graph = dependency_map(config)
    found: set[str] = set()
    frontier = [name for name in services if name in graph]
    while frontier:
        current = frontier.pop()
        if current not in found:
            found.add(current)
            frontier.extend(graph[current])
    return [name for name in graph if name in found]
