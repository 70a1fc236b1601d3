"""Helpers shared by the tests: waiting on conditions and running corral."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent


def wait_for(
    condition: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll `condition` until it returns something truthy, or fail the test.

    Returns the truthy value so a test can use what it waited for.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def corral_env(**extra: str) -> dict[str, str]:
    """The environment for a corral subprocess: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), env.get("PYTHONPATH")])
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def corral_cmd(*args: str) -> list[str]:
    """The argv that runs the corral CLI of this checkout."""
    return [sys.executable, "-m", "supervisor", *args]


def run_corral(
    *args: str, cwd: Path | None = None, timeout: float = 60.0, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run one corral command to completion and capture its output."""
    return subprocess.run(
        corral_cmd(*args),
        cwd=cwd,
        env=corral_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_corral(
    *args: str, cwd: Path | None = None, **env: str
) -> subprocess.Popen[str]:
    """Start a long-running corral command (such as `up`) in the background.

    It runs in its own session so a test can signal it (and only it) and
    read its merged output afterwards.
    """
    return subprocess.Popen(
        corral_cmd(*args),
        cwd=cwd,
        env=corral_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
