"""`corral up -d`: start the supervisor in the background and report once
every service is ready or failed."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from supervisor.control import (
    AlreadyRunning,
    ControlClient,
    claim_is_free,
    remove_endpoint,
    secure_dir,
    whoever_runs,
)
from supervisor.errors import NotRunning, StartFailed
from supervisor.logs import SUPERVISOR_LOG
from supervisor.model import ProjectConfig

log = logging.getLogger(__name__)

#: Seconds the background supervisor gets to open its control channel.
CHANNEL_TIMEOUT = 60.0


def up_detached(config: ProjectConfig, services: Sequence[str]) -> int:
    """Start `corral up` detached; 0 once all are ready, 1 if any failed.

    Prints one line per failed service, naming it and why.
    """
    if not claim_is_free(config.state_dir):
        raise AlreadyRunning(config.path, *whoever_runs(config.path))
    # Nobody holds the claim, so a socket or key found now is a dead run's;
    # removing it before spawning leaves only the new supervisor's to find.
    remove_endpoint(config.state_dir)

    log_path = secure_dir(config.state_dir / "logs") / SUPERVISOR_LOG
    proc = spawn_supervisor(config.path, services, log_path)
    with wait_for_channel(config.path, proc, log_path) as client:
        failed: dict[str, str] = client.request("wait_ready")["failed"]

    for name, reason in sorted(failed.items()):
        print(f"corral: {name}: {reason}", file=sys.stderr)
    if not failed:
        print(f"corral: running in the background (pid {proc.pid}); logs: {log_path}")
    return 1 if failed else 0


def spawn_supervisor(
    config_path: Path, services: Sequence[str], log_path: Path
) -> subprocess.Popen[bytes]:
    """`python -m supervisor up -f FILE SERVICE...` in its own session.

    Its output is appended to `log_path`, so it outlives this terminal.
    """
    argv = [sys.executable, "-m", "supervisor", "up", "-f", str(config_path)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    extra: dict[str, Any]
    if sys.platform == "win32":
        # A hidden console rather than none (DETACHED_PROCESS): the runtime
        # stops children with CTRL_BREAK_EVENT, which needs a console.
        flags = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        extra = {"creationflags": flags}
    else:
        extra = {"start_new_session": True}

    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        proc = subprocess.Popen(
            [*argv, *services],
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            cwd=config_path.parent,
            env=env,
            **extra,
        )
    finally:
        os.close(fd)
    log.debug("started the supervisor in the background with pid %s", proc.pid)
    return proc


def wait_for_channel(
    config_path: Path, proc: subprocess.Popen[bytes], log_path: Path
) -> ControlClient:
    """Connect to the new supervisor once it listens.

    Raises StartFailed with the last line of its log if it exits first.
    """
    deadline = time.monotonic() + CHANNEL_TIMEOUT
    delay = 0.01
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise StartFailed(
                f"{config_path}: the supervisor exited with code {code} during "
                f"start: {_last_line(log_path)}"
            )
        try:
            return ControlClient.connect(config_path)
        except NotRunning:
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
    raise StartFailed(
        f"{config_path}: the supervisor (pid {proc.pid}) opened no control channel "
        f"within {CHANNEL_TIMEOUT:g} s; see {log_path}"
    )


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return next((line for line in reversed(lines) if line.strip()), "(no output)")
