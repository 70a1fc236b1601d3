"""Two environments that share one registry file and a service name: the
second is refused for that service instead of the two overwriting each
other's record every second."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import wait_for
from tests.up_support import Up

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell")


def _config(registry: Path, own: str) -> str:
    return textwrap.dedent(
        f"""
        registry: {registry}
        services:
          api:
            command: sleep 1000
            restart: always
          {own}:
            command: sleep 1000
        """
    )


def _api_pid(registry: Path) -> int | None:
    try:
        data = json.loads(registry.read_text())
    except (OSError, ValueError):
        return None
    for record in data.get("services", {}).get("api", []):
        if record["id"] == "api-1":
            return int(record["pid"])
    return None


def test_a_second_environment_is_refused_the_same_instance_id(
    tmp_path: Path, runs: list[Up]
) -> None:
    shared = tmp_path / "shared" / "registry.json"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Up(tmp_path / "a", _config(shared, "first"))
    runs.append(first)
    owner = wait_for(lambda: _api_pid(shared), what="the first api-1 registered")

    second = Up(tmp_path / "b", _config(shared, "second"))
    runs.append(second)

    wait_for(
        lambda: second.has_line("already holds 'api-1' for a live process"),
        what="the second environment to refuse api-1",
    )
    wait_for(lambda: second.has_line("second-1 ready"), what="its own service")
    assert _api_pid(shared) == owner
    assert not second.has_line("api-1 started")
