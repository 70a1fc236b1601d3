"""Load a corral YAML file into a validated ProjectConfig.

Every problem becomes a ConfigError naming the file and the place: the
line and column of the offending key or value, and its key path such as
`services.api.readiness.http`. Loading starts nothing and writes nothing.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from supervisor.config_render import render_config
from supervisor.config_service import ServiceReader
from supervisor.config_source import Source, ensure_mapping, environ_lookup
from supervisor.errors import ConfigError
from supervisor.graph import DependencyError, check_dependencies
from supervisor.model import ProjectConfig, ServiceConfig
from supervisor.yamldoc import DocumentError, KeyPath, parse

__all__ = ["load_config", "render_config"]

log = logging.getLogger(__name__)

TOP_LEVEL_KEYS = ("registry", "services")
DEFAULT_REGISTRY = Path(".corral") / "registry.json"
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> ProjectConfig:
    """Read, interpolate and validate the configuration file at `path`.

    `environ` stands for the process environment (default: os.environ) in
    interpolation and in the PATH used to find each command. Raises
    ConfigError, with the place, for anything wrong.
    """
    path = Path(path).absolute()
    env = dict(os.environ if environ is None else environ)
    source = _read(path)
    top = ensure_mapping(source, (), source.document.data)
    source.check_keys((), top, TOP_LEVEL_KEYS, extension_prefix="x-")

    registry = _registry(source, top, env)
    services = _services(source, top, env, registry)
    _check_graph(source, services)
    _check_ports(source, services)

    log.debug("loaded %s: %d services", path, len(services))
    return ProjectConfig(path=path, registry=registry, services=services)


def _read(path: Path) -> Source:
    """The parsed file, refusing unreadable, empty and non-mapping files."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot read the file: {exc}") from exc

    try:
        document = parse(text)
    except DocumentError as exc:
        place = f"line {exc.line}, column {exc.column}" if exc.line else ""
        raise ConfigError(str(path), place, exc.message) from exc

    if document.data is None:
        raise ConfigError(
            str(path), "line 1, column 1", "the file is empty", "define `services:`"
        )
    return Source(path, document)


def _registry(source: Source, top: dict[str, Any], env: dict[str, str]) -> str:
    """The registry location: a URL as given, or an absolute path."""
    base = source.path.parent
    if "registry" not in top:
        return str(base / DEFAULT_REGISTRY)

    lookup = environ_lookup(env)
    text = source.final_string(("registry",), top["registry"], lookup)
    if not text:
        source.fail(("registry",), "must not be empty")
    if _URL.match(text):
        return text
    return str(base / Path(text).expanduser())


def _services(
    source: Source, top: dict[str, Any], env: dict[str, str], registry: str
) -> dict[str, ServiceConfig]:
    """Every service of the file, each read and checked on its own."""
    if "services" not in top:
        source.fail((), "no `services:` defined", "add a `services:` mapping")
    entries = ensure_mapping(source, ("services",), top["services"])
    if not entries:
        source.fail(("services",), "no services defined", "add at least one service")

    names = [str(name) for name in entries]
    services: dict[str, ServiceConfig] = {}
    for name, raw in entries.items():
        if not isinstance(name, str) or not _SERVICE_NAME.fullmatch(name):
            source.fail(
                ("services", name),
                f"invalid service name '{name}'",
                "use letters, digits, '-', '_' and '.'",
                key=True,
            )
        reader = ServiceReader(source, name, env, names)
        services[name] = reader.read(raw)
    return services


def _check_graph(source: Source, services: dict[str, ServiceConfig]) -> None:
    """Missing, self, disabled and cyclic dependencies, at their entry."""
    graph = {n: [d.service for d in s.depends_on] for n, s in services.items()}
    disabled = [n for n, s in services.items() if s.disabled]
    try:
        check_dependencies(graph, disabled)
    except DependencyError as exc:
        where: KeyPath = ("services", exc.service, "depends_on")
        raw = source.document.data["services"][exc.service]["depends_on"]
        key = exc.dependency
        if isinstance(raw, list):
            where = (*where, raw.index(key))
            source.fail(where, exc.message, exc.hint)
        source.fail((*where, key), exc.message, exc.hint, key=True)


def _check_ports(source: Source, services: dict[str, ServiceConfig]) -> None:
    """Two enabled services may not share a fixed port."""
    owners: dict[int, str] = {}
    for name, service in services.items():
        port = service.port
        if service.disabled or not isinstance(port, int):
            continue
        if port in owners:
            source.fail(
                ("services", name, "port"),
                f"port {port} is also used by service '{owners[port]}'",
                "give each service its own port, or use `port: auto`",
            )
        owners[port] = name
