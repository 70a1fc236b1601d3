"""Parsers for the typed scalar values of a configuration: durations and
signal names. Each raises ValueError with a message fit for a user."""

from __future__ import annotations

import re

#: Signals a service may name, by POSIX name. A fixed table rather than the
#: `signal` module, so a file is judged the same on Windows as on Linux.
SIGNALS = frozenset(
    {
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGABRT",
        "SIGKILL",
        "SIGUSR1",
        "SIGUSR2",
        "SIGALRM",
        "SIGTERM",
        "SIGCONT",
        "SIGWINCH",
    }
)

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as `250ms`, `10s`, `1m30s`.

    A bare number (or numeric string) counts as seconds. Negative,
    infinite and malformed values raise ValueError.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a duration such as 10s or 250ms, got {value!r}")
    if isinstance(value, str):
        return _parse_duration_text(value.strip())
    return _non_negative(float(value), value)


def _parse_duration_text(text: str) -> float:
    if _NUMBER.fullmatch(text):
        return _non_negative(float(text), text)

    total = 0.0
    pos = 0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"invalid duration '{text}': use a number of seconds or units "
            "ms, s, m, h such as 250ms, 10s, 1m30s"
        )
    return total


def _non_negative(seconds: float, given: object) -> float:
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"a duration must be zero or more seconds, got {given!r}")
    return seconds


def normalise_signal(value: object) -> str:
    """The `SIGxxx` name for `TERM`, `sigterm`, `SIGTERM` and the like.

    Raises ValueError for anything that is not a signal in SIGNALS.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected a signal name such as SIGTERM, got {value!r}")
    name = value.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name not in SIGNALS:
        raise ValueError(f"unknown signal '{value}'")
    return name
