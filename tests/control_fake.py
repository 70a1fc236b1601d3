"""A small real orchestrator for the control-channel tests.

It keeps instance states in memory and runs no service, so the channel and
the commands can be tested on their own. Run as a script it is a stand-in
supervisor: `python tests/control_fake.py CONFIG SERVICE...` claims the
config, serves its control channel and exits once asked to shut down.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from supervisor.control import claim_run  # noqa: E402
from supervisor.control_server import ControlServer, InstanceStatus  # noqa: E402
from supervisor.errors import UsageError  # noqa: E402


class FakeOrchestrator:
    """Services with one instance each; `failing` ones never become ready."""

    def __init__(self, services: Sequence[str], failing: Sequence[str] = ()):
        self.failing = set(failing)
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.down = threading.Event()
        self.status = {name: self._fresh(name) for name in services}

    def _fresh(self, name: str, restarts: int = 0) -> InstanceStatus:
        state = "failed" if name in self.failing else "ready"
        return InstanceStatus(
            service=name,
            id=f"{name}-1",
            state=state,
            pid=None if state == "failed" else 4242,
            restarts=restarts,
            started_at=time.time(),
            endpoints=[] if state == "failed" else ["tcp://127.0.0.1:1"],
        )

    def _check(self, names: Sequence[str]) -> None:
        unknown = [n for n in names if n not in self.status]
        if unknown:
            raise UsageError(f"no such service: {', '.join(unknown)}")

    def start(self, names: Sequence[str]) -> None:
        self._check(names)
        self.calls.append(("start", tuple(names)))
        for name in names:
            self.status[name] = self._fresh(name, self.status[name].restarts)

    def stop(self, names: Sequence[str]) -> None:
        self._check(names)
        self.calls.append(("stop", tuple(names)))
        for name in names:
            old = self.status[name]
            self.status[name] = InstanceStatus(name, old.id, "stopped", None, 0)

    def restart(self, names: Sequence[str]) -> None:
        self._check(names)
        self.calls.append(("restart", tuple(names)))
        for name in names:
            self.status[name] = self._fresh(name, self.status[name].restarts + 1)

    def snapshot(self) -> list[InstanceStatus]:
        return list(self.status.values())

    def wait_ready(self, timeout: float | None = None) -> dict[str, str]:
        return {n: "exited with code 3" for n in sorted(self.failing)}

    def shutdown(self) -> None:
        self.calls.append(("shutdown", ()))
        self.down.set()


def main(argv: list[str]) -> int:
    """Serve a fake environment for CONFIG until `down`."""
    config = Path(argv[0]).resolve()
    failing = [n[1:] for n in argv[1:] if n.startswith("!")]
    services = [n.lstrip("!") for n in argv[1:]]
    fake = FakeOrchestrator(services, failing)
    with claim_run(config), ControlServer(config, fake):
        print("serving", flush=True)
        fake.down.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
