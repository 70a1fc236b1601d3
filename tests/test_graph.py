"""Dependency checks and start/stop order."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.graph import (
    DependencyError,
    check_dependencies,
    dependents,
    find_cycle,
    start_levels,
    stop_levels,
    stop_order,
    with_dependencies,
)
from supervisor.model import Dependency, ProjectConfig, ServiceConfig


def project(
    graph: dict[str, list[str]], disabled: tuple[str, ...] = ()
) -> ProjectConfig:
    services = {
        name: ServiceConfig(
            name=name,
            command=["true"],
            working_dir=Path("."),
            depends_on=[Dependency(d) for d in needs],
            disabled=name in disabled,
        )
        for name, needs in graph.items()
    }
    return ProjectConfig(path=Path("corral.yaml"), registry="r.json", services=services)


DIAMOND = {"web": ["api", "auth"], "api": ["db"], "auth": ["db"], "db": [], "cron": []}


def test_start_levels_put_dependencies_first_and_keep_file_order() -> None:
    assert start_levels(project(DIAMOND)) == [["db", "cron"], ["api", "auth"], ["web"]]


def test_stop_order_stops_dependents_first() -> None:
    config = project(DIAMOND)

    assert stop_levels(config) == [["web"], ["api", "auth"], ["db", "cron"]]
    assert stop_order(config) == ["web", "api", "auth", "db", "cron"]


def test_dependents_are_found_transitively() -> None:
    assert dependents(project(DIAMOND), "db") == ["web", "api", "auth"]
    assert dependents(project(DIAMOND), "web") == []


def test_with_dependencies_gives_what_a_subset_needs() -> None:
    assert with_dependencies(project(DIAMOND), ["api"]) == ["api", "db"]


def test_disabled_services_are_left_out_of_the_order() -> None:
    config = project({"a": [], "b": ["a"]}, disabled=("b",))

    assert start_levels(config) == [["a"]]


def test_cycle_is_reported_as_a_path() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a"]}

    assert find_cycle(graph) == ["a", "b", "c", "a"]
    with pytest.raises(DependencyError, match="cycle: a -> b -> c -> a"):
        check_dependencies(graph)


def test_self_dependency_names_the_service() -> None:
    with pytest.raises(DependencyError, match="'api' depends on itself"):
        check_dependencies({"api": ["api"]})


def test_missing_dependency_suggests_a_close_name() -> None:
    with pytest.raises(DependencyError, match="unknown service 'dbb'") as info:
        check_dependencies({"api": ["dbb"], "db": []})
    assert info.value.hint == "did you mean 'db'?"


def test_dependency_on_a_disabled_service_is_refused() -> None:
    with pytest.raises(DependencyError, match="'db', which is disabled"):
        check_dependencies({"api": ["db"], "db": []}, disabled=["db"])


def test_acyclic_graph_passes() -> None:
    check_dependencies(DIAMOND)
    assert find_cycle(DIAMOND) == []
