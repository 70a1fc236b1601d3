"""Fixtures shared by the test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.up_support import Up


@pytest.fixture
def runs() -> Iterator[list[Up]]:
    """The `corral up` runs a test starts, each ended whatever happens."""
    started: list[Up] = []
    yield started
    for run in started:
        run.close()
