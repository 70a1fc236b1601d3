"""The registry record of one service instance, and what counts as a change."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

# Fields this module reads and writes itself; anything else in a record is
# kept verbatim in `extra` so that a rewrite loses nothing another writer added.
_KNOWN_FIELDS = frozenset(
    {
        "id",
        "name",
        "version",
        "metadata",
        "endpoints",
        "timestamp",
        "pid",
        "pid_started",
        "host",
        "ttl",
        "heartbeat",
    }
)


class FieldError(ValueError):
    """A field of a stored instance with a value of the wrong type."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


def this_host() -> str:
    """The host name written into records registered from this machine."""
    return socket.gethostname()


@dataclass
class ServiceInstance:
    """One running instance of a service, as the registry stores it.

    `pid` names the process that owns the record; with it set, the record is
    pruned once that process is gone. `ttl` (seconds) makes the record a
    lease that is pruned unless renewed within that time. `timestamp`,
    `heartbeat` and `pid_started` are filled in by the registry.
    """

    id: str
    name: str
    version: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    endpoints: list[str] = field(default_factory=list)
    timestamp: int = 0
    pid: int | None = None
    pid_started: float | None = None
    host: str | None = None
    ttl: float | None = None
    heartbeat: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.metadata = {str(k): _metadata_value(v) for k, v in self.metadata.items()}
        self.endpoints = [str(e) for e in self.endpoints]

    @property
    def key(self) -> tuple[str, str]:
        """The identity of the record in a registry: (name, id)."""
        return (self.name, self.id)

    def identity(self) -> tuple[Any, ...]:
        """What a watcher compares: id, name, version, metadata, endpoints."""
        return (
            self.id,
            self.name,
            self.version,
            tuple(sorted(self.metadata.items())),
            tuple(self.endpoints),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the record, Kratos fields first."""
        data: dict[str, Any] = dict(self.extra)
        data.update(
            id=self.id,
            name=self.name,
            version=self.version,
            metadata=dict(self.metadata),
            endpoints=list(self.endpoints),
            timestamp=int(self.timestamp),
        )
        optional = {
            "pid": self.pid,
            "pid_started": self.pid_started,
            "host": self.host,
            "ttl": self.ttl,
            "heartbeat": self.heartbeat,
        }
        data.update({k: v for k, v in optional.items() if v is not None})
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceInstance:
        """Build a record from its JSON object; raises ValueError on bad types."""
        if not isinstance(data, dict):
            raise ValueError(f"an instance must be an object, not {_kind(data)}")
        ident = _field(data, "id", str)
        name = _field(data, "name", str)
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise FieldError(
                "metadata", f"instance {ident!r}: metadata must be an object"
            )
        endpoints = data.get("endpoints") or []
        if not isinstance(endpoints, list) or not all(
            isinstance(e, str) for e in endpoints
        ):
            raise FieldError(
                "endpoints", f"instance {ident!r}: endpoints must be a list of strings"
            )
        return cls(
            id=ident,
            name=name,
            version=_optional(data, "version", str) or "",
            metadata=metadata,
            endpoints=endpoints,
            timestamp=int(_optional(data, "timestamp", (int, float)) or 0),
            pid=_optional(data, "pid", int),
            pid_started=_as_float(_optional(data, "pid_started", (int, float))),
            host=_optional(data, "host", str),
            ttl=_as_float(_optional(data, "ttl", (int, float))),
            heartbeat=_as_float(_optional(data, "heartbeat", (int, float))),
            extra={k: v for k, v in data.items() if k not in _KNOWN_FIELDS},
        )


def same_instances(a: list[ServiceInstance], b: list[ServiceInstance]) -> bool:
    """Whether two instance lists are the same set, ignoring order and times."""
    return sorted(i.identity() for i in a) == sorted(i.identity() for i in b)


def _metadata_value(value: Any) -> str:
    # The Go reader accepts only strings in metadata, so numbers and booleans
    # from a config are written the way YAML users spell them.
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def _kind(value: Any) -> str:
    return type(value).__name__


def _field(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise FieldError(name, f"instance field {name!r} must be a {kind.__name__}")
    return value


def _optional(data: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise FieldError(name, f"instance field {name!r} has the wrong type: {value!r}")
    return value


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)
