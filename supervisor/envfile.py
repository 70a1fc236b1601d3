"""Read `env_file`s: `KEY=value` lines in the dotenv style docker compose
accepts, with comments, an optional `export ` prefix and quoted values."""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


class EnvFileError(ValueError):
    """A line of an env file that cannot be read; `line` counts from 1."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}")


def read_env_file(path: Path) -> dict[str, str]:
    """The variables an env file sets, in file order.

    Values are taken literally: single quotes keep everything, double
    quotes understand backslash escapes, an unquoted value ends at ` #`.
    Raises OSError when the file cannot be read, EnvFileError for a line
    that is not `KEY=value`.
    """
    text = path.read_text(encoding="utf-8-sig")
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        entry = _parse_line(line, number)
        if entry is not None:
            values[entry[0]] = entry[1]
    log.debug("read %d variables from %s", len(values), path)
    return values


def _parse_line(line: str, number: int) -> tuple[str, str] | None:
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    if stripped.startswith("export "):
        stripped = stripped[len("export ") :].lstrip()

    key, equals, rest = stripped.partition("=")
    key = key.strip()
    if not equals or not _KEY.fullmatch(key):
        # The line is not echoed: it may hold a secret.
        raise EnvFileError(number, "expected KEY=value")
    return key, _parse_value(rest.strip(), number)


def _parse_value(text: str, number: int) -> str:
    if text[:1] == "'":
        end = text.find("'", 1)
        if end < 0:
            raise EnvFileError(number, "unclosed single quote")
        return text[1:end]
    if text[:1] == '"':
        return _double_quoted(text, number)
    comment = re.search(r"\s#", text)
    return (text[: comment.start()] if comment else text).strip()


def _double_quoted(text: str, number: int) -> str:
    out: list[str] = []
    pos = 1
    while pos < len(text):
        char = text[pos]
        if char == '"':
            return "".join(out)
        if char == "\\" and pos + 1 < len(text):
            following = text[pos + 1]
            out.append(_ESCAPES.get(following, "\\" + following))
            pos += 2
            continue
        out.append(char)
        pos += 1
    raise EnvFileError(number, "unclosed double quote")
