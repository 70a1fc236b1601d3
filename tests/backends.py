"""The registry backends that tests/test_backend_contract.py runs against.

Each entry maps a backend name to a function that, given a fresh temporary
folder, returns a location for open_registry() where no other test writes.
A location (rather than an object) lets tests open the same registry from
other processes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def file_location(tmp_path: Path) -> str:
    """A registry file in a folder that does not exist yet."""
    return str(tmp_path / "state" / "registry.json")


def etcd_location(tmp_path: Path) -> str:
    """A fresh namespace on the session's etcd server (skips without etcd)."""
    from tests.etcd_server import shared_location

    return shared_location()


BACKENDS: dict[str, Callable[[Path], str]] = {
    "file": file_location,
    "etcd": etcd_location,
}
