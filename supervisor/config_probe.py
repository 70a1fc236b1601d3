"""Read a `readiness` or `liveness` block into a Probe."""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection
from typing import Any

from supervisor.config_source import Source, ensure_mapping
from supervisor.interpolate import Lookup, render, variables_in
from supervisor.model import Probe, ProbeKind
from supervisor.yamldoc import KeyPath

KINDS: tuple[ProbeKind, ...] = ("http", "tcp", "exec", "log_line")
TIMING_KEYS = ("interval", "timeout", "retries", "initial_delay")

#: Defaults per probe use: (interval, timeout, retries). A readiness probe
#: waits for a slow start; a liveness probe gives up after a few failures.
DEFAULTS = {"readiness": (1.0, 1.0, 30), "liveness": (5.0, 2.0, 3)}


def read_probe(
    source: Source, path: KeyPath, raw: Any, lookup: Lookup, deferred: Collection[str]
) -> Probe:
    """The probe at `path`: exactly one kind, plus optional timing.

    Targets are templates like every value that reaches an instance.
    """
    data = ensure_mapping(source, path, raw)
    source.check_keys(path, data, (*KINDS, *TIMING_KEYS))
    kinds = [kind for kind in KINDS if kind in data]
    if len(kinds) != 1:
        found = " and ".join(kinds) if kinds else "none"
        source.fail(path, f"needs exactly one of {', '.join(KINDS)}; found {found}")

    kind = kinds[0]
    where = (*path, kind)
    argv: tuple[str, ...] = ()
    if kind == "exec" and isinstance(data[kind], list):
        argv = tuple(
            source.template((*where, i), v, lookup, deferred)
            for i, v in enumerate(data[kind])
        )
        target = shlex.join(argv)
    else:
        target = source.template(where, data[kind], lookup, deferred)
    _check_target(source, where, kind, target)
    if kind == "exec":
        argv = argv or _split(source, where, target)

    interval, timeout, retries = DEFAULTS[str(path[-1])]
    return Probe(
        kind=kind,
        target=target,
        interval=_timing(source, path, data, "interval", lookup, interval),
        timeout=_timing(source, path, data, "timeout", lookup, timeout),
        retries=_retries(source, path, data, lookup, retries),
        initial_delay=_timing(source, path, data, "initial_delay", lookup, 0.0),
        argv=argv,
    )


def _check_target(source: Source, where: KeyPath, kind: str, target: str) -> None:
    """Refuse targets that could never pass, before anything starts."""
    if not target.strip():
        source.fail(where, f"the {kind} probe has no target")
    if kind == "http" and not target.startswith(("http://", "https://")):
        source.fail(where, f"'{target}' is not an http:// or https:// URL")
    if kind == "tcp" and ":" not in target:
        source.fail(where, f"'{target}' is not host:port", "e.g. 127.0.0.1:${PORT}")
    if kind == "log_line":
        sample = {name: "0" for name in variables_in(target)}
        try:
            re.compile(render(target, sample))
        except re.error as exc:
            source.fail(where, f"invalid regular expression: {exc}")


def _split(source: Source, where: KeyPath, target: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(target))
    except ValueError as exc:
        source.fail(where, f"cannot split the command: {exc}")


def _timing(
    source: Source,
    path: KeyPath,
    data: dict[str, Any],
    key: str,
    lookup: Lookup,
    default: float,
) -> float:
    if key not in data:
        return default
    return source.duration(
        (*path, key), data[key], lookup, positive=key != "initial_delay"
    )


def _retries(
    source: Source, path: KeyPath, data: dict[str, Any], lookup: Lookup, default: int
) -> int:
    if "retries" not in data:
        return default
    return source.integer((*path, "retries"), data["retries"], lookup, 1)
