"""Variable interpolation in configuration values, in two stages.

The syntax follows docker compose: `${VAR}`, bare `$VAR`, `${VAR:-default}`
(default when unset or empty), `${VAR-default}` (default when unset),
`${VAR:?message}` / `${VAR?message}` (an error when unset), `${VAR:+alt}` /
`${VAR+alt}` (alt when set), and `$$` for a literal `$`. A `$` followed by
anything else is kept as it is, so regular expressions such as `ready$`
need no escaping.

Stage one, `substitute`, runs when the file is loaded. It replaces what is
known then and leaves the variables that only exist when an instance
starts (`PORT`, `CORRAL_*`, `<NAME>_ENDPOINTS`) untouched, along with every
`$$`. Its result is a *template*: a value it inserted has each `$` doubled
so that it is never read as a variable again.

Stage two, `render`, runs when an instance is spawned: it fills in the
runtime variables and turns `$$` into `$`, giving the final string.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: Variables that only the runtime knows; `substitute` leaves them in place.
RUNTIME_VARIABLES = frozenset(
    {"PORT", "CORRAL_SERVICE", "CORRAL_INSTANCE_ID", "CORRAL_REGISTRY"}
)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")

Lookup = Callable[[str], "str | None"]


class InterpolationError(ValueError):
    """A value that cannot be interpolated: an unset variable or bad syntax.

    `variable` is the variable's name, or "" for a syntax error.
    """

    def __init__(self, variable: str, message: str) -> None:
        self.variable = variable
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class _Reference:
    """One `${...}` or `$NAME` found in a text, with where it ends."""

    name: str
    operator: str
    argument: str
    end: int


def endpoints_variable(service: str) -> str:
    """The variable that carries `service`'s endpoints to its dependents.

    Upper case, with `-` and `.` as `_`: `user-api` gives `USER_API_ENDPOINTS`.
    """
    return service.upper().replace("-", "_").replace(".", "_") + "_ENDPOINTS"


def escape(value: str) -> str:
    """Make a plain string safe to embed in a template: `$` becomes `$$`."""
    return value.replace("$", "$$")


def substitute(
    text: str, lookup: Lookup, deferred: Collection[str] = RUNTIME_VARIABLES
) -> str:
    """Replace the variables `lookup` knows; return a template.

    `lookup` gives a variable's value as a template (already escaped), or
    None when the variable is unset. References to names in `deferred` are
    kept as written, for `render`. Raises InterpolationError for an unset
    variable with no default and for malformed syntax.
    """
    return _expand(text, lookup, deferred, final=False)


def render(template: str, variables: Mapping[str, str]) -> str:
    """Finish a template with the runtime's variables; return the final text.

    `variables` holds plain values (`PORT`, `CORRAL_*`, `<NAME>_ENDPOINTS`).
    `$$` becomes `$`. Raises InterpolationError when the template needs a
    variable that `variables` lacks and gives no default.
    """
    return _expand(template, variables.get, (), final=True)


def variables_in(template: str) -> list[str]:
    """The names of the variables a template still refers to, in order."""
    names: list[str] = []

    def note(name: str) -> str | None:
        names.append(name)
        return "set"

    _expand(template, note, (), final=True)
    return names


def _expand(text: str, lookup: Lookup, deferred: Collection[str], final: bool) -> str:
    """Scan `text` once, replacing references; see `substitute` and `render`."""
    out: list[str] = []
    pos = 0
    while True:
        start = text.find("$", pos)
        if start < 0 or start == len(text) - 1:
            out.append(text[pos:])
            return "".join(out)

        out.append(text[pos:start])
        following = text[start + 1]
        if following == "$":
            out.append("$" if final else "$$")
            pos = start + 2
            continue

        ref = _parse(text, start)
        if ref is None:
            out.append("$")
            pos = start + 1
            continue

        if ref.name in deferred:
            out.append(text[start : ref.end])
        else:
            out.append(_resolve(ref, lookup, deferred, final))
        pos = ref.end


def _parse(text: str, start: int) -> _Reference | None:
    """Read the reference that starts at `text[start] == "$"`.

    Returns None when the `$` starts no reference (it is then literal).
    """
    if text[start + 1] != "{":
        match = _NAME.match(text, start + 1)
        if match is None:
            return None
        return _Reference(match.group(), "", "", match.end())

    close = _closing_brace(text, start + 2)
    body = text[start + 2 : close]
    match = _NAME.match(body)
    if match is None:
        raise InterpolationError(
            "", f"invalid interpolation '{text[start : close + 1]}'"
        )

    rest = body[match.end() :]
    if not rest:
        return _Reference(match.group(), "", "", close + 1)
    for operator in _OPERATORS:
        if rest.startswith(operator):
            argument = rest[len(operator) :]
            return _Reference(match.group(), operator, argument, close + 1)
    raise InterpolationError(
        match.group(), f"invalid interpolation '{text[start : close + 1]}'"
    )


def _closing_brace(text: str, pos: int) -> int:
    """Index of the `}` closing a `${` whose body starts at `pos`.

    Nested `${...}` in a default are skipped over, as are `$$` pairs.
    """
    depth = 1
    while pos < len(text):
        char = text[pos]
        if text.startswith("$$", pos):
            pos += 2
            continue
        if text.startswith("${", pos):
            depth += 1
            pos += 2
            continue
        if char == "}":
            depth -= 1
            if depth == 0:
                return pos
        pos += 1
    raise InterpolationError("", f"unclosed '${{' in '{text}'")


def _resolve(
    ref: _Reference, lookup: Lookup, deferred: Collection[str], final: bool
) -> str:
    """The text that replaces one reference, applying its operator."""
    value = lookup(ref.name)
    unset = value is None
    empty = unset or value == ""
    op = ref.operator

    if op in (":-", "-") and (empty if op == ":-" else unset):
        return _expand(ref.argument, lookup, deferred, final)
    if op in (":+", "+"):
        use = not (empty if op == ":+" else unset)
        return _expand(ref.argument, lookup, deferred, final) if use else ""
    if op in (":?", "?") and (empty if op == ":?" else unset):
        detail = _expand(ref.argument, lookup, deferred, final=True)
        raise InterpolationError(ref.name, f"variable '{ref.name}': {detail}")
    if value is None:
        raise InterpolationError(ref.name, f"variable '{ref.name}' is not set")

    log.debug("interpolated %s", ref.name)
    return value
