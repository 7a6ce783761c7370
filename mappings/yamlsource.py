"""YAML files that remember where every key and value came from.

`read_yaml(path)` parses one file with PyYAML's safe loader and keeps, for every path into the
data (`("deals", "pipelines", 1)`), the line and column of its key and of its value, plus the raw
text of scalar values (so an error can quote what the user typed: `no`, not `False`). Mapping keys
are always strings (`yes:` stays the key "yes"), and a key written twice in one mapping is an
error rather than a silent override.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mappings.errors import Location, Problem, SettingsError

__all__ = ["Document", "PathKey", "parse_yaml", "path_text", "read_yaml", "walk"]

PathKey = tuple[str | int, ...]


def path_text(path: PathKey) -> str:
    """A path into the data as messages show it: `deals.pipelines #2`, or `the top level`."""
    out = ""
    for item in path:
        out += f" #{item + 1}" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out or "the top level"


def walk(data: Any, path: PathKey = ()) -> Iterator[tuple[PathKey, Any]]:
    """Every (path, value) of parsed YAML data, the data itself first."""
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from walk(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from walk(value, (*path, i))


class _DuplicateKey(yaml.MarkedYAMLError):
    pass


class _Loader(yaml.SafeLoader):
    """Safe loader whose mapping keys are the raw key text and which refuses duplicate keys."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[str, Any]:
        self.flatten_mapping(node)
        mapping: dict[str, Any] = {}
        first: dict[str, yaml.Mark] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain word, not a list or mapping",
                    key_node.start_mark,
                )  # fmt: skip
            key = key_node.value
            if key in first:
                line = first[key].line + 1
                raise _DuplicateKey(
                    None, None, f"key '{key}' appears twice in this mapping (first on line {line})",
                    key_node.start_mark,
                )  # fmt: skip
            first[key] = key_node.start_mark
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_yaml_map)


@dataclass
class Document:
    """One parsed settings file: its data and where each part of it was written."""

    name: str  # as shown in messages (the path the user gave, or relative to the cwd)
    data: Any
    _keys: dict[PathKey, Location] = field(default_factory=dict)
    _values: dict[PathKey, Location] = field(default_factory=dict)
    _raw: dict[PathKey, str] = field(default_factory=dict)
    _quoted: dict[PathKey, bool] = field(default_factory=dict)

    def key_at(self, path: PathKey) -> Location:
        """Where the key of `path` is written (for list items: the item itself)."""
        return self._nearest(path, self._keys)

    def value_at(self, path: PathKey) -> Location:
        """Where the value of `path` starts."""
        return self._nearest(path, self._values)

    def raw(self, path: PathKey) -> str | None:
        """The text the user typed for a scalar value (None for lists and mappings)."""
        return self._raw.get(path)

    def text_column(self, path: PathKey, offset: int) -> Location:
        """The location of character `offset` of a one-line scalar string value."""
        start = self.value_at(path)
        quote = 1 if self._quoted.get(path) else 0
        return Location(start.file, start.line, start.column + quote + offset)

    def _nearest(self, path: PathKey, table: dict[PathKey, Location]) -> Location:
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self._values:
                return self._values[probe]
            probe = probe[:-1]
        return self._values.get((), Location(self.name, 1, 1))

    # -- building ------------------------------------------------------------------------------
    def _index(self, node: Node, path: PathKey) -> None:
        self._values[path] = self._loc(node)
        if isinstance(node, ScalarNode):
            self._raw[path] = node.value
            self._quoted[path] = node.style in ("'", '"')
        elif isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                child = (*path, key_node.value)
                self._keys[child] = self._loc(key_node)
                self._index(value_node, child)
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                child = (*path, i)
                self._keys[child] = self._loc(item)
                self._index(item, child)

    def _loc(self, node: Node) -> Location:
        return Location(self.name, node.start_mark.line + 1, node.start_mark.column + 1)


def parse_yaml(text: str, name: str) -> Document:
    """Parse YAML text; a syntax error raises `SettingsError` located at the mistake."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(name, mark.line + 1, mark.column + 1) if mark else Location(name, 1, 1)
        what = exc.problem or "invalid YAML"
        if not isinstance(exc, _DuplicateKey):
            what = f"this is not valid YAML: {what}"
            if exc.context:
                what += f" ({exc.context})"
        raise SettingsError([Problem(where, what)]) from None
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML raises marked errors for files
        problem = Problem(Location(name, 1, 1), f"this is not valid YAML: {exc}")
        raise SettingsError([problem]) from None
    finally:
        loader.dispose()
    doc = Document(name=name, data=data)
    if node is not None:
        doc._index(node, ())
    return doc


def display_name(path: Path) -> str:
    """A path as messages show it: relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_yaml(path: Path, name: str | None = None) -> Document:
    """Read and parse one settings file."""
    shown = name or display_name(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError([Problem(None, f"{shown}: file not found")]) from None
    except UnicodeDecodeError as exc:
        raise SettingsError(
            [Problem(Location(shown, 1, 1), f"the file is not UTF-8 text ({exc.reason})")]
        ) from None
    return parse_yaml(text, shown)
