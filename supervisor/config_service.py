"""Read one service of a configuration file into a ServiceConfig.

The order matters: `env_file` and `environment` come first because every
other field may refer to their variables; `port` and `depends_on` come
next because they decide which variables are left for the runtime.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from supervisor.config_probe import read_probe
from supervisor.config_source import (
    Source,
    ensure_list,
    ensure_mapping,
    environ_lookup,
    type_name,
)
from supervisor.envfile import EnvFileError, read_env_file
from supervisor.executable import find_executable
from supervisor.fields import normalise_signal
from supervisor.interpolate import (
    RUNTIME_VARIABLES,
    endpoints_variable,
    escape,
    render,
    variables_in,
)
from supervisor.model import (
    Backoff,
    Condition,
    Dependency,
    RestartPolicy,
    ServiceConfig,
)
from supervisor.yamldoc import KeyPath

log = logging.getLogger(__name__)

#: The most replicas of one service: each is a process, a log file and a
#: registry entry; far more than that is a typo, not an environment.
MAX_REPLICAS = 1000

SERVICE_KEYS = (
    "command",
    "working_dir",
    "environment",
    "env_file",
    "port",
    "replicas",
    "version",
    "metadata",
    "endpoints",
    "readiness",
    "liveness",
    "depends_on",
    "restart",
    "max_restarts",
    "backoff",
    "stop_signal",
    "stop_grace_period",
    "on_dependency_change",
    "disabled",
)
CONDITIONS: tuple[Condition, ...] = (
    "service_started",
    "service_healthy",
    "service_completed_successfully",
)
RESTART_POLICIES: tuple[RestartPolicy, ...] = ("no", "on-failure", "always")


class ServiceReader:
    """Reads the service `name`; `environ` stands for the process env."""

    def __init__(
        self, source: Source, name: str, environ: Mapping[str, str], names: list[str]
    ) -> None:
        self.source = source
        self.name = name
        self.environ = environ
        self.names = names
        self.path: KeyPath = ("services", name)
        self.variables: dict[str, str] = {}
        self.deferred: frozenset[str] = RUNTIME_VARIABLES

    def read(self, raw: Any) -> ServiceConfig:
        """The validated service; raises ConfigError for the first problem."""
        if raw is None:
            self.source.fail(self.path, "a service needs at least a `command`")
        data = ensure_mapping(self.source, self.path, raw)
        self.source.check_keys(self.path, data, SERVICE_KEYS, extension_prefix="x-")
        if "command" not in data:
            self.source.fail(self.path, "missing `command`", "add `command: ...`")

        secret_keys, environment = self._environment(data)
        port = self._port(data.get("port"))
        depends_on = self._depends_on(data.get("depends_on"))
        self._defer(port, depends_on)

        service = ServiceConfig(
            name=self.name,
            command=self._command(data["command"]),
            working_dir=self._working_dir(data.get("working_dir", ".")),
            environment=environment,
            port=port,
            secret_keys=secret_keys,
            depends_on=depends_on,
        )
        self._read_scalars(data, service)
        self._read_structures(data, service)
        if not service.disabled:
            self._check_executable(service)
        return service

    # -- variables -------------------------------------------------------

    def _environment(
        self, data: dict[str, Any]
    ) -> tuple[frozenset[str], dict[str, str]]:
        """env_file then environment; also fills the interpolation variables.

        Returns the keys whose final value came from an env_file (secrets)
        and the environment as templates.
        """
        from_files = self._env_files(data.get("env_file"))
        environment = {k: escape(v) for k, v in from_files.items()}
        self.variables = dict(environment)

        explicit = self._explicit_environment(data.get("environment"))
        environment.update(explicit)
        secrets = frozenset(k for k in from_files if k not in explicit)
        return secrets, environment

    def _env_files(self, raw: Any) -> dict[str, str]:
        if raw is None:
            return {}
        path = (*self.path, "env_file")
        entries = raw if isinstance(raw, list) else [raw]
        values: dict[str, str] = {}
        for index, entry in enumerate(entries):
            where = (*path, index) if isinstance(raw, list) else path
            text = self.source.final_string(where, entry, self._lookup_environ)
            values.update(self._env_file(where, self.source.path.parent / text))
        return values

    def _env_file(self, where: KeyPath, file: Path) -> dict[str, str]:
        try:
            return read_env_file(file)
        except FileNotFoundError:
            self.source.fail(where, f"env_file {file} does not exist")
        except EnvFileError as exc:
            self.source.fail(where, f"env_file {file}, line {exc.line}: {exc.message}")
        except (OSError, UnicodeDecodeError) as exc:
            self.source.fail(where, f"cannot read env_file {file}: {exc}")

    def _explicit_environment(self, raw: Any) -> dict[str, str]:
        """`environment` as a map or a list of KEY=value, interpolated in order.

        A key with no value takes the process environment's value, if any.
        """
        path = (*self.path, "environment")
        pairs = self._environment_pairs(path, raw)
        result: dict[str, str] = {}
        for where, key, value in pairs:
            if value is None:
                if key in self.environ:
                    result[key] = escape(self.environ[key])
                    self.variables[key] = result[key]
                continue
            result[key] = self.source.template(where, value, self.lookup, self.deferred)
            self.variables[key] = result[key]
        return result

    def _environment_pairs(
        self, path: KeyPath, raw: Any
    ) -> list[tuple[KeyPath, str, Any]]:
        if raw is None:
            return []
        if isinstance(raw, list):
            pairs: list[tuple[KeyPath, str, Any]] = []
            for index, item in enumerate(raw):
                text = self.source.text((*path, index), item)
                key, equals, value = text.partition("=")
                self._check_env_key((*path, index), key.strip())
                pairs.append(((*path, index), key.strip(), value if equals else None))
            return pairs
        mapping = ensure_mapping(self.source, path, raw)
        for key in mapping:
            self._check_env_key((*path, key), key)
        return [((*path, k), str(k), v) for k, v in mapping.items()]

    def _check_env_key(self, where: KeyPath, key: Any) -> None:
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            self.source.fail(where, f"invalid environment variable name {key!r}")

    def lookup(self, name: str) -> str | None:
        """The value of a variable for this service, as a template."""
        if name in self.variables:
            return self.variables[name]
        if name == "PORT":
            return None
        return self._lookup_environ(name)

    def _lookup_environ(self, name: str) -> str | None:
        return environ_lookup(self.environ)(name)

    def _defer(self, port: object, depends_on: list[Dependency]) -> None:
        """Decide which variables the runtime fills in for this service."""
        deferred = set(RUNTIME_VARIABLES)
        if port is None:
            deferred.discard("PORT")
        deferred.update(endpoints_variable(d.service) for d in depends_on)
        self.deferred = frozenset(deferred)

    # -- fields ----------------------------------------------------------

    def _port(self, raw: Any) -> int | Literal["auto"] | None:
        path = (*self.path, "port")
        if raw is None:
            return None
        if isinstance(raw, str):
            text = self.source.final_string(path, raw, self.lookup).strip()
            if text == "auto":
                return "auto"
            raw = text
        if isinstance(raw, str) and not raw.isdigit():
            self.source.fail(path, f"expected a port number or `auto`, got '{raw}'")
        return self.source.integer(path, raw, self.lookup, 1, 65535)

    def _depends_on(self, raw: Any) -> list[Dependency]:
        path = (*self.path, "depends_on")
        if raw is None:
            return []
        if isinstance(raw, list):
            found: list[Dependency] = []
            for index, item in enumerate(raw):
                dependency = self._dependency_name((*path, index), item)
                if any(d.service == dependency.service for d in found):
                    self.source.fail((*path, index), f"'{item}' is listed twice")
                found.append(dependency)
            return found
        mapping = ensure_mapping(self.source, path, raw)
        return [
            self._dependency_entry((*path, name), name, value)
            for name, value in mapping.items()
        ]

    def _dependency_name(self, where: KeyPath, raw: Any) -> Dependency:
        if not isinstance(raw, str):
            self.source.fail(where, f"expected a service name, got {type_name(raw)}")
        return Dependency(raw)

    def _dependency_entry(self, where: KeyPath, name: Any, raw: Any) -> Dependency:
        if not isinstance(name, str):
            self.source.fail(where, "expected a service name", key=True)
        if raw is None:
            return Dependency(name)
        entry = ensure_mapping(self.source, where, raw)
        self.source.check_keys(where, entry, ("condition",))
        condition = entry.get("condition", "service_started")
        if condition not in CONDITIONS:
            self.source.fail(
                (*where, "condition"),
                f"unknown condition {condition!r}",
                "use " + ", ".join(CONDITIONS),
            )
        return Dependency(name, condition)

    def _command(self, raw: Any) -> list[str]:
        path = (*self.path, "command")
        if isinstance(raw, list):
            if not raw:
                self.source.fail(path, "the command is empty")
            return [
                self.source.template((*path, i), v, self.lookup, self.deferred)
                for i, v in enumerate(raw)
            ]

        template = self.source.template(path, raw, self.lookup, self.deferred)
        try:
            argv = shlex.split(template)
        except ValueError as exc:
            self.source.fail(path, f"cannot split the command: {exc}")
        if not argv:
            self.source.fail(path, "the command is empty")
        return argv

    def _working_dir(self, raw: Any) -> Path:
        path = (*self.path, "working_dir")
        text = self.source.final_string(path, raw, self.lookup)
        folder = (self.source.path.parent / Path(text).expanduser()).absolute()
        if not folder.is_dir():
            self.source.fail(path, f"working_dir {folder} does not exist")
        return folder

    def _read_scalars(self, data: dict[str, Any], service: ServiceConfig) -> None:
        """The fields that hold one plain value each."""
        source, path, lookup = self.source, self.path, self.lookup
        service.replicas = self._replicas(data.get("replicas", 1), service.port)
        if "version" in data:
            service.version = source.final_string(
                (*path, "version"), data["version"], lookup
            )

        if "max_restarts" in data:
            service.max_restarts = source.integer(
                (*path, "max_restarts"), data["max_restarts"], lookup, 0
            )
        service.restart = self._restart(data.get("restart", "on-failure"))

        if "stop_grace_period" in data:
            service.stop_grace_period = source.duration(
                (*path, "stop_grace_period"), data["stop_grace_period"], lookup
            )
        service.stop_signal = self._signal(data.get("stop_signal", "SIGTERM"))
        service.on_dependency_change = self._on_dependency_change(
            data.get("on_dependency_change", "ignore")
        )

        if "disabled" in data:
            service.disabled = source.boolean((*path, "disabled"), data["disabled"])

    def _replicas(self, raw: Any, port: object) -> int:
        """1 to MAX_REPLICAS; more than one needs a port per replica (`auto`)."""
        path = (*self.path, "replicas")
        replicas = self.source.integer(path, raw, self.lookup, 1, MAX_REPLICAS)
        if isinstance(port, int) and replicas > 1:
            self.source.fail(
                path,
                f"{replicas} replicas cannot share the fixed port {port}",
                "use `port: auto` to give each replica its own port",
            )
        return replicas

    def _read_structures(self, data: dict[str, Any], service: ServiceConfig) -> None:
        """The fields that hold lists and mappings."""
        path = self.path
        service.metadata = self._metadata(data.get("metadata"))
        service.endpoints = self._endpoints(data.get("endpoints"), service.port)
        for kind in ("readiness", "liveness"):
            if data.get(kind) is not None:
                probe = read_probe(
                    self.source, (*path, kind), data[kind], self.lookup, self.deferred
                )
                setattr(service, kind, probe)
        if "backoff" in data:
            service.backoff = self._backoff(data["backoff"])

    def _restart(self, raw: Any) -> RestartPolicy:
        if raw is False:
            return "no"
        for policy in RESTART_POLICIES:
            if raw == policy:
                return policy
        self.source.fail(
            (*self.path, "restart"),
            f"unknown restart policy {raw!r}",
            "use no, on-failure or always",
        )

    def _signal(self, raw: Any) -> str:
        path = (*self.path, "stop_signal")
        try:
            return normalise_signal(raw)
        except ValueError as exc:
            self.source.fail(path, str(exc), "use a name such as SIGTERM or SIGINT")

    def _on_dependency_change(self, raw: Any) -> str:
        if raw in ("ignore", "restart"):
            return str(raw)
        try:
            return normalise_signal(raw)
        except ValueError:
            self.source.fail(
                (*self.path, "on_dependency_change"),
                f"expected ignore, restart or a signal name, got {raw!r}",
            )

    def _metadata(self, raw: Any) -> dict[str, str]:
        path = (*self.path, "metadata")
        if raw is None:
            return {}
        mapping = ensure_mapping(self.source, path, raw)
        result: dict[str, str] = {}
        for key, value in mapping.items():
            where = (*path, key)
            if not isinstance(key, str):
                self.source.fail(
                    where, "metadata keys must be strings", "quote the key", key=True
                )
            result[key] = self.source.template(where, value, self.lookup, self.deferred)
        return result

    def _endpoints(self, raw: Any, port: object) -> list[str]:
        path = (*self.path, "endpoints")
        if raw is None:
            return ["tcp://127.0.0.1:${PORT}"] if port is not None else []
        items = ensure_list(self.source, path, raw)
        endpoints = []
        for index, item in enumerate(items):
            where = (*path, index)
            text = self.source.template(where, item, self.lookup, self.deferred)
            if "://" not in text:
                self.source.fail(
                    where,
                    f"endpoint '{text}' is not a URL",
                    "write it as scheme://host:port, e.g. http://127.0.0.1:${PORT}",
                )
            endpoints.append(text)
        return endpoints

    def _backoff(self, raw: Any) -> Backoff:
        path = (*self.path, "backoff")
        data = ensure_mapping(self.source, path, raw)
        self.source.check_keys(path, data, ("initial", "max"))
        defaults = Backoff()
        initial = defaults.initial
        if "initial" in data:
            initial = self.source.duration(
                (*path, "initial"), data["initial"], self.lookup
            )
        largest = max(defaults.max, initial)
        if "max" in data:
            largest = self.source.duration((*path, "max"), data["max"], self.lookup)
        if largest < initial:
            self.source.fail(
                (*path, "max"),
                f"max ({largest:g}s) is less than initial ({initial:g}s)",
            )
        return Backoff(initial, largest)

    def _check_executable(self, service: ServiceConfig) -> None:
        """The program must exist, unless its name waits for the runtime."""
        program = service.command[0]
        if variables_in(program):
            return
        program = render(program, {})
        search_path = self._search_path(service)
        if find_executable(program, service.working_dir, search_path) is None:
            where = (
                "in " + str(service.working_dir) if _has_slash(program) else "on PATH"
            )
            self.source.fail(
                (*self.path, "command"),
                f"executable '{program}' not found {where}",
                "check the spelling, or install it",
            )

    def _search_path(self, service: ServiceConfig) -> str:
        template = service.environment.get("PATH")
        if template is not None and not variables_in(template):
            return render(template, {})
        return self.environ.get("PATH", os.defpath)


def _has_slash(program: str) -> bool:
    return "/" in program or (os.sep != "/" and os.sep in program)
