"""The validated configuration: what `supervisor.config` produces and the
rest of the supervisor consumes.

String fields that reach a running instance (command, environment values,
endpoints, probe targets, metadata values) are templates: variables known
when the file is loaded are already substituted, while `${PORT}`,
`${CORRAL_*}` and `${<NAME>_ENDPOINTS}` (and `$$`) are left for
`supervisor.interpolate.render` to finish when the instance is spawned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ProbeKind = Literal["http", "tcp", "exec", "log_line"]
Condition = Literal[
    "service_started", "service_healthy", "service_completed_successfully"
]
RestartPolicy = Literal["no", "on-failure", "always"]


@dataclass(frozen=True)
class Probe:
    """A readiness or liveness check. Durations are in seconds."""

    kind: ProbeKind
    target: str
    interval: float = 1.0
    timeout: float = 1.0
    retries: int = 3
    initial_delay: float = 0.0
    #: For `exec`: the command's arguments, each a template to render; the
    #: target is the same command as one shell-quoted line, for display.
    argv: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dependency:
    """One entry of `depends_on`: wait for `service` to meet `condition`."""

    service: str
    condition: Condition = "service_started"


@dataclass(frozen=True)
class Backoff:
    """Delay before restart n is initial * 2**(n-1), capped at max (seconds)."""

    initial: float = 1.0
    max: float = 30.0


@dataclass
class ServiceConfig:
    """One service of the configuration, after validation and defaults."""

    name: str
    command: list[str]
    working_dir: Path
    environment: dict[str, str] = field(default_factory=dict)
    port: int | Literal["auto"] | None = None
    replicas: int = 1
    version: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    endpoints: list[str] | None = None
    readiness: Probe | None = None
    liveness: Probe | None = None
    depends_on: list[Dependency] = field(default_factory=list)
    restart: RestartPolicy = "on-failure"
    max_restarts: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    stop_signal: str = "SIGTERM"
    stop_grace_period: float = 10.0
    on_dependency_change: str = "ignore"
    disabled: bool = False
    #: Names of environment variables that came from an env_file; their
    #: values are secrets and never shown by `ps`, `config` or corral's logs.
    secret_keys: frozenset[str] = frozenset()

    def instance_ids(self) -> list[str]:
        """Ids of this service's instances: `<service>-<replica>` from 1."""
        return [f"{self.name}-{n}" for n in range(1, self.replicas + 1)]


@dataclass
class ProjectConfig:
    """A whole configuration file."""

    path: Path
    registry: str
    services: dict[str, ServiceConfig]

    @property
    def state_dir(self) -> Path:
        """`.corral/` beside the config: registry, logs, control, state."""
        return self.path.parent / ".corral"

    def enabled(self) -> dict[str, ServiceConfig]:
        """The services that are not `disabled`, in file order."""
        return {n: s for n, s in self.services.items() if not s.disabled}
