"""Where a value sits in JSON text, so that an error can name its line.

Python's json module reports positions only for syntax errors. A file that
parses but holds a wrong type (an instance that is a string, a pid that is
text) is found again here by walking the text with the module's own
scanner, one key or index at a time.
"""

from __future__ import annotations

import json
import re

_decoder = json.JSONDecoder()
_space = re.compile(r"[ \t\n\r]*")


def locate(text: str, path: list[str | int]) -> tuple[int, int]:
    """The 1-based (line, column) of the value at `path`, or (0, 0).

    `path` holds object keys (str) and array indexes (int) from the top.
    Where a key repeats, the last one counts, as it does for json.loads.
    """
    try:
        pos = _skip(text, 0)
        for step in path:
            if isinstance(step, str):
                pos = _member(text, pos, step)
            else:
                pos = _item(text, pos, step)
            if pos < 0:
                return (0, 0)
    except (ValueError, IndexError):
        return (0, 0)
    return _line_and_column(text, pos)


def _member(text: str, pos: int, key: str) -> int:
    if text[pos] != "{":
        return -1
    found = -1
    pos = _skip(text, pos + 1)
    while text[pos] != "}":
        name, pos = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
        pos = _skip(text, _skip(text, pos) + 1)  # past the colon
        if name == key:
            found = pos
        pos = _past_value(text, pos)
    return found


def _item(text: str, pos: int, index: int) -> int:
    if text[pos] != "[":
        return -1
    pos = _skip(text, pos + 1)
    count = 0
    while text[pos] != "]":
        if count == index:
            return pos
        pos = _past_value(text, pos)
        count += 1
    return -1


def _past_value(text: str, pos: int) -> int:
    _, end = _decoder.raw_decode(text, pos)
    end = _skip(text, end)
    if text[end] == ",":
        end = _skip(text, end + 1)
    return end


def _skip(text: str, pos: int) -> int:
    match = _space.match(text, pos)
    return match.end() if match else pos


def _line_and_column(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - text.rfind("\n", 0, pos)
