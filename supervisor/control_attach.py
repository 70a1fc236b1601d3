"""Plug the control channel and `on_dependency_change` into a running
orchestrator: one call after it is built, one close at shutdown.

The runtime's orchestrator starts services in the background and offers
`wait_settled`; the control channel promises that `start` and `restart`
return once the step is done. `RuntimeAdapter` bridges the two.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from typing import Protocol

from registry import Registry
from supervisor.control_server import ControlServer, InstanceStatus
from supervisor.depwatch import DependencyWatcher
from supervisor.model import ProjectConfig

log = logging.getLogger(__name__)

_RUNNING = ("starting", "ready", "restarting")

#: Seconds `start` and `restart` wait for dependents to react to new
#: endpoints (see supervisor.depwatch) before returning anyway.
DEPENDENTS_TIMEOUT = 10.0


class RuntimeStatus(Protocol):
    """One instance as the runtime reports it."""

    @property
    def service(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def pid(self) -> int | None: ...
    @property
    def restarts(self) -> int: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def endpoints(self) -> list[str]: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def reason(self) -> str: ...


class Runtime(Protocol):
    """The runtime orchestrator (supervisor.run.Orchestrator)."""

    def start(self, names: Iterable[str] | None = None) -> None: ...
    def stop(self, names: Iterable[str] | None = None) -> None: ...
    def restart(self, names: Iterable[str]) -> None: ...
    def snapshot(self) -> Sequence[RuntimeStatus]: ...
    def wait_settled(self, timeout: float | None = None) -> bool: ...
    def shutdown(self) -> None: ...


class RuntimeAdapter:
    """The runtime seen as a control-server `Orchestrator` and as the
    `DependentActions` of the dependency watcher."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.depwatch: DependencyWatcher | None = None

    def start(self, names: Sequence[str]) -> None:
        """Start and return once every started instance is ready or failed,
        and the dependents of these services reacted to their endpoints."""
        self.runtime.start(names)
        self._settle(names)

    def _settle(self, names: Sequence[str]) -> None:
        self.runtime.wait_settled()
        if self.depwatch is not None and self.depwatch.caught_up(
            names, DEPENDENTS_TIMEOUT
        ):
            self.runtime.wait_settled()

    def stop(self, names: Sequence[str]) -> None:
        """Stop (the runtime returns when they are down)."""
        self.runtime.stop(names)

    def restart(self, names: Sequence[str]) -> None:
        """Restart and return once every instance is ready or failed, and the
        dependents of these services reacted to their new endpoints."""
        self.runtime.restart(names)
        self._settle(names)

    def snapshot(self) -> list[InstanceStatus]:
        """The runtime's instances, as `ps` shows them."""
        return [
            InstanceStatus(
                service=s.service,
                id=s.id,
                state=s.state,
                pid=s.pid,
                restarts=s.restarts,
                started_at=s.started_at,
                endpoints=list(s.endpoints),
                reason=s.reason,
            )
            for s in self.runtime.snapshot()
        ]

    def wait_ready(self, timeout: float | None = None) -> dict[str, str]:
        """Wait until settled; each failed service with why (one line each)."""
        self.runtime.wait_settled(timeout)
        failed: dict[str, str] = {}
        for s in self.runtime.snapshot():
            if s.state == "failed":
                why = s.reason or f"exited with code {s.exit_code}"
                failed[s.service] = "; ".join(
                    filter(None, [failed.get(s.service), why])
                )
        return failed

    def shutdown(self) -> None:
        """Stop everything; `corral up` then exits."""
        self.runtime.shutdown()

    def restart_service(self, name: str) -> None:
        """Restart a dependent whose dependency moved (does not wait)."""
        self.runtime.restart([name])

    def signal_service(self, name: str, signum: int) -> None:
        """Send `signum` to the main process of each running instance."""
        for s in self.runtime.snapshot():
            if s.service == name and s.state in _RUNNING and s.pid:
                try:
                    os.kill(s.pid, signum)
                except ProcessLookupError:
                    log.debug("%s exited before it got signal %s", s.id, signum)

    def is_running(self, name: str) -> bool:
        """Whether any instance of `name` is starting, ready or restarting."""
        return any(
            s.service == name and s.state in _RUNNING for s in self.runtime.snapshot()
        )


class Attachment:
    """The control server and dependency watcher of one run."""

    def __init__(self, server: ControlServer, depwatch: DependencyWatcher):
        self.server = server
        self.depwatch = depwatch

    def close(self) -> None:
        """Stop following dependencies and close the control channel."""
        self.depwatch.close()
        self.server.close()


def attach(config: ProjectConfig, runtime: Runtime, registry: Registry) -> Attachment:
    """Serve the control channel of `config` and follow its dependencies."""
    adapter = RuntimeAdapter(runtime)
    depwatch = DependencyWatcher(config, registry, adapter).start()
    adapter.depwatch = depwatch
    try:
        server = ControlServer(config.path, adapter).start()
    except BaseException:
        depwatch.close()
        raise
    return Attachment(server, depwatch)
