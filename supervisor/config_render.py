"""Show a loaded configuration as YAML, the way `corral config` prints it.

The output is the configuration after defaults, paths and load-time
variables were applied; runtime variables such as `${PORT}` stay as
templates. Values that came from an env_file are secrets: they are shown
as `***`, wherever they were interpolated.
"""

from __future__ import annotations

from typing import Any

import yaml

from supervisor.model import Probe, ProjectConfig, ServiceConfig

MASK = "***"

#: Secret values shorter than this are masked only as whole environment
#: values; masking them inside other strings would garble unrelated text.
MIN_MASKED_LENGTH = 4


def render_config(config: ProjectConfig) -> str:
    """The resolved configuration as a YAML document, secrets masked."""
    services = {name: _service(s) for name, s in config.services.items()}
    document = {"registry": config.registry, "services": services}
    return yaml.safe_dump(
        document, sort_keys=False, default_flow_style=False, allow_unicode=True
    )


def _service(service: ServiceConfig) -> dict[str, Any]:
    secrets = _secret_values(service)
    out: dict[str, Any] = {
        "command": [_mask(a, secrets) for a in service.command],
        "working_dir": str(service.working_dir),
    }
    if service.environment:
        out["environment"] = {
            key: MASK if key in service.secret_keys else _mask(value, secrets)
            for key, value in service.environment.items()
        }
    if service.port is not None:
        out["port"] = service.port
    out["replicas"] = service.replicas
    if service.version:
        out["version"] = service.version
    if service.metadata:
        out["metadata"] = {k: _mask(v, secrets) for k, v in service.metadata.items()}
    out["endpoints"] = [_mask(e, secrets) for e in service.endpoints or []]
    for kind in ("readiness", "liveness"):
        probe = getattr(service, kind)
        if probe is not None:
            out[kind] = _probe(probe, secrets)
    if service.depends_on:
        out["depends_on"] = {
            d.service: {"condition": d.condition} for d in service.depends_on
        }
    out.update(_lifecycle(service))
    return out


def _lifecycle(service: ServiceConfig) -> dict[str, Any]:
    return {
        "restart": service.restart,
        "max_restarts": service.max_restarts,
        "backoff": {
            "initial": _seconds(service.backoff.initial),
            "max": _seconds(service.backoff.max),
        },
        "stop_signal": service.stop_signal,
        "stop_grace_period": _seconds(service.stop_grace_period),
        "on_dependency_change": service.on_dependency_change,
        "disabled": service.disabled,
    }


def _probe(probe: Probe, secrets: list[str]) -> dict[str, Any]:
    return {
        probe.kind: _mask(probe.target, secrets),
        "interval": _seconds(probe.interval),
        "timeout": _seconds(probe.timeout),
        "retries": probe.retries,
        "initial_delay": _seconds(probe.initial_delay),
    }


def _seconds(value: float) -> str:
    """A duration in the file's own notation: `1.5s`, `250ms`."""
    if value and value < 1:
        return f"{value * 1000:g}ms"
    return f"{value:g}s"


def _secret_values(service: ServiceConfig) -> list[str]:
    values = {service.environment[k] for k in service.secret_keys}
    usable = [v for v in values if len(v) >= MIN_MASKED_LENGTH]
    return sorted(usable, key=len, reverse=True)


def _mask(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text
