"""Numbers out of range in a registry file: reported as corrupt, and never
written back as the non-JSON `Infinity` that every other reader rejects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry import FileRegistry, RegistryCorrupt, ServiceInstance


@pytest.mark.parametrize("field", ["timestamp", "heartbeat", "ttl", "pid_started"])
def test_an_infinite_number_is_corrupt(tmp_path: Path, field: str) -> None:
    path = tmp_path / "registry.json"
    entry = f'{{"id": "a-1", "name": "a", "{field}": 1e999}}'
    text = f'{{"services": {{"a": [{entry}]}}, "version": "1.0.0"}}'
    path.write_text(text)
    registry = FileRegistry(path)

    with pytest.raises(RegistryCorrupt, match="1e999 is out of range"):
        registry.list_services()
    with pytest.raises(RegistryCorrupt):
        registry.register(ServiceInstance(id="b-1", name="b"))
    assert path.read_text() == text


def test_an_infinite_lease_is_never_written(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    registry = FileRegistry(path)

    with pytest.raises(ValueError):
        registry.register(ServiceInstance(id="b-1", name="b"), ttl=float("inf"))

    assert json.loads(path.read_text())["services"] == {}
