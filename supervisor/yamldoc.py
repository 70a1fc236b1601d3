"""Read a YAML file into plain data while keeping where each part was written.

PyYAML's `safe_load` forgets positions, yet every configuration error must
name its line and column. So the file is composed into nodes and turned
into dicts, lists and scalars here, recording the start mark of every value
and every mapping key under its key path (a tuple of keys and list indexes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import yaml

log = logging.getLogger(__name__)

KeyPath = tuple[str | int, ...]

#: Bound on the values a document may expand to through aliases, so that
#: a "billion laughs" file is refused instead of exhausting memory.
MAX_NODES = 100_000


class DocumentError(ValueError):
    """A file that is not usable YAML; `line` and `column` count from 1."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(message)


@dataclass(frozen=True)
class Position:
    """A place in the file: line and column, both counted from 1."""

    line: int
    column: int

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}"


@dataclass
class Document:
    """Plain data read from YAML, with the position of each key and value.

    `raw` keeps the source text of plain scalars, so `1.10` can be read as
    the string "1.10" where a string is wanted.
    """

    data: Any
    values: dict[KeyPath, Position] = field(default_factory=dict)
    keys: dict[KeyPath, Position] = field(default_factory=dict)
    raw: dict[KeyPath, str] = field(default_factory=dict)

    def position(self, path: KeyPath, key: bool = False) -> Position | None:
        """Where the value (or with `key`, the key) at `path` was written.

        Falls back to the nearest enclosing value that has a position.
        """
        if key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            found = self.values.get(path[:end])
            if found is not None:
                return found
        return None


def parse(text: str) -> Document:
    """Parse one YAML document; raise DocumentError for anything unusable."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        document = Document(data=None)
        if node is not None:
            document.data = _Builder(loader, document).build(node, ())
        return document
    except yaml.MarkedYAMLError as exc:
        raise _document_error(exc) from exc
    except yaml.YAMLError as exc:
        raise DocumentError(f"invalid YAML: {exc}") from exc
    finally:
        loader.dispose()


def _document_error(exc: yaml.MarkedYAMLError) -> DocumentError:
    """One line from PyYAML's multi-line message, at its problem mark."""
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem:
        problem = f"{exc.problem} ({exc.context})"
    if mark is None:
        return DocumentError(f"invalid YAML: {problem}")
    return DocumentError(f"invalid YAML: {problem}", mark.line + 1, mark.column + 1)


def _position(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    """Turns composed nodes into plain data, filling a Document's positions."""

    def __init__(self, loader: yaml.SafeLoader, document: Document) -> None:
        self.loader = loader
        self.document = document
        self.count = 0
        self.active: set[int] = set()
        self.own_keys: dict[int, set[int]] = {}

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        """The plain value of `node`, recording positions under `path`."""
        self._count(node)
        self.document.values[path] = _position(node)
        if isinstance(node, yaml.ScalarNode):
            if node.style is None:
                self.document.raw[path] = str(node.value)
            return self.loader.construct_object(node, deep=True)

        if id(node) in self.active:
            raise DocumentError("recursive alias", *_astuple(_position(node)))
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [
                    self.build(item, (*path, i)) for i, item in enumerate(node.value)
                ]
            return self._mapping(node, path)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.Node, path: KeyPath) -> dict[Any, Any]:
        """A mapping; merge keys (`<<`) applied, duplicate keys refused."""
        if not isinstance(node, yaml.MappingNode):
            raise DocumentError("unsupported YAML node", *_astuple(_position(node)))
        own = self.own_keys.setdefault(id(node), {id(k) for k, _ in node.value})
        self.loader.flatten_mapping(node)

        result: dict[Any, Any] = {}
        seen: dict[Any, Position] = {}
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                where = _position(key_node)
                raise DocumentError("a key must be a plain value", *_astuple(where))
            if key in seen and id(key_node) in own:
                first = seen[key]
                raise DocumentError(
                    f"duplicate key '{key}' (first at {first})",
                    *_astuple(_position(key_node)),
                )
            if id(key_node) in own:
                seen[key] = _position(key_node)
            key_path = (*path, key)
            self.document.keys[key_path] = _position(key_node)
            result[key] = self.build(value_node, key_path)
        return result

    def _count(self, node: yaml.Node) -> None:
        self.count += 1
        if self.count > MAX_NODES:
            where = _astuple(_position(node))
            raise DocumentError(f"document expands past {MAX_NODES} values", *where)


def _astuple(position: Position) -> tuple[int, int]:
    return position.line, position.column
