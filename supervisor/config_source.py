"""The parsed configuration file and the typed readers the loader uses on it.

A `Source` knows the file and where each key and value was written, so
each reader can turn a wrong value into a ConfigError that names the line,
the column and the key path.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from supervisor.errors import ConfigError
from supervisor.fields import parse_duration
from supervisor.interpolate import (
    RUNTIME_VARIABLES,
    InterpolationError,
    Lookup,
    escape,
    render,
    substitute,
    variables_in,
)
from supervisor.yamldoc import Document, KeyPath

log = logging.getLogger(__name__)


def dotted(path: KeyPath) -> str:
    """`services.api.command[0]` for ("services", "api", "command", 0)."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def environ_lookup(environ: Mapping[str, str]) -> Lookup:
    """A lookup over plain values (such as os.environ) giving templates."""

    def lookup(name: str) -> str | None:
        value = environ.get(name)
        return None if value is None else escape(value)

    return lookup


def type_name(value: object) -> str:
    """How a YAML value's type is called in a message."""
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return names.get(type(value), type(value).__name__)


@dataclass
class Source:
    """A configuration file being read: its path and its positioned data."""

    path: Path
    document: Document

    def fail(
        self, path: KeyPath, message: str, hint: str = "", key: bool = False
    ) -> NoReturn:
        """Raise a ConfigError at the key (or value) found at `path`."""
        position = self.document.position(path, key)
        where = dotted(path)
        place = ": ".join(str(p) for p in (position, where) if p)
        raise ConfigError(str(self.path), place, message, hint)

    def check_keys(
        self,
        path: KeyPath,
        mapping: Mapping[Any, Any],
        allowed: Iterable[str],
        extension_prefix: str = "",
    ) -> None:
        """Refuse keys outside `allowed`, suggesting the closest one."""
        known = list(allowed)
        for key in mapping:
            if key in known:
                continue
            if extension_prefix and str(key).startswith(extension_prefix):
                continue
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else ""
            if not hint:
                hint = "known keys: " + ", ".join(known)
            self.fail((*path, key), f"unknown key '{key}'", hint, key=True)

    def text(self, path: KeyPath, value: Any) -> str:
        """A scalar as a string: numbers as written, booleans as true/false."""
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if value is None or isinstance(value, (dict, list)):
            self.fail(path, f"expected a string, got {type_name(value)}")
        return self.document.raw.get(path, str(value))

    def template(
        self, path: KeyPath, value: Any, lookup: Lookup, deferred: Collection[str]
    ) -> str:
        """A string field that the runtime finishes with `interpolate.render`."""
        text = self.text(path, value)
        try:
            return substitute(text, lookup, deferred)
        except InterpolationError as exc:
            self.fail(path, exc.message, _unset_hint(exc))

    def final_string(self, path: KeyPath, value: Any, lookup: Lookup) -> str:
        """A string field resolved completely now; runtime variables refused."""
        template = self.template(path, value, lookup, RUNTIME_VARIABLES)
        needed = variables_in(template)
        if needed:
            self.fail(
                path,
                f"${{{needed[0]}}} is only known when an instance starts",
                "use it in command, environment, endpoints, metadata or probes",
            )
        return render(template, {})

    def integer(
        self,
        path: KeyPath,
        value: Any,
        lookup: Lookup,
        minimum: int,
        maximum: int | None = None,
    ) -> int:
        """An integer, given as a number or as a string after interpolation."""
        number = value
        if isinstance(value, str):
            text = self.final_string(path, value, lookup).strip()
            number = int(text) if text.lstrip("+-").isdigit() else text
        if isinstance(number, bool) or not isinstance(number, int):
            self.fail(path, f"expected an integer, got {_shown(value)}")

        if number < minimum or (maximum is not None and number > maximum):
            top = f" and {maximum}" if maximum is not None else " or more"
            between = "between " if maximum is not None else ""
            self.fail(path, f"must be {between}{minimum}{top}, got {number}")
        return number

    def duration(
        self, path: KeyPath, value: Any, lookup: Lookup, positive: bool = False
    ) -> float:
        """Seconds from a number or a string such as 250ms, 10s, 1m30s."""
        if isinstance(value, str):
            value = self.final_string(path, value, lookup)
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.fail(path, str(exc))
        if positive and seconds == 0:
            self.fail(path, "must be more than zero")
        return seconds

    def boolean(self, path: KeyPath, value: Any) -> bool:
        """A true/false value; strings are not taken for booleans."""
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, got {_shown(value)}")
        return value


def ensure_mapping(source: Source, path: KeyPath, value: Any) -> dict[Any, Any]:
    """`value` if it is a mapping, else a ConfigError at `path`."""
    if not isinstance(value, dict):
        what = "the file" if not path else "this key"
        source.fail(path, f"{what} must hold a mapping, got {type_name(value)}")
    return value


def ensure_list(source: Source, path: KeyPath, value: Any) -> list[Any]:
    """`value` if it is a list, else a ConfigError at `path`."""
    if not isinstance(value, list):
        source.fail(path, f"expected a list, got {type_name(value)}")
    return value


def _shown(value: Any) -> str:
    if isinstance(value, (dict, list)) or value is None:
        return type_name(value)
    return repr(value)


def _unset_hint(exc: InterpolationError) -> str:
    if not exc.variable or not exc.message.endswith("is not set"):
        return ""
    name = exc.variable
    if name == "PORT":
        return "PORT is set only for a service with `port:`; add `port: auto`"
    if name.endswith("_ENDPOINTS"):
        return "list the service it names in depends_on"
    return (
        f"set it in the environment or env_file, or give a default: ${{{name}:-value}}"
    )
