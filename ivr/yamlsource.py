"""Read flow YAML into plain Python values while remembering where every value came from.

The loader guards against the YAML traps that bite call-flow designers:

* Mapping keys are always strings. Under PyYAML's YAML 1.1 rules a keypad key ``1:`` would become
  the int ``1`` and ``no:``/``off:`` the boolean ``False``; here they stay ``"1"``, ``"no"``, ``"off"``.
* Only ``true``/``false`` are booleans. ``yes``, ``no``, ``on`` and ``off`` are plain words, so a
  speech choice ``no`` stays the word "no".
* Only plain decimal numbers are numbers. ``0123`` (an account number) is not read as octal 83,
  ``1:30`` is not read as the sexagesimal 90; both stay strings.
* Duplicate keys are an error instead of the last one silently winning.

Every value's position is kept in a :class:`Positions` map keyed by its path (the tuple of keys and
list indexes leading to it), so schema errors can point at ``file:line:col``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from ivr.errors import FlowLoadError, Problem

_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")

Path = tuple[str | int, ...]


@dataclass
class Positions:
    """Where each value of a parsed document starts, by path; 1-based line and column."""

    path: str
    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def locate(self, loc: tuple[Any, ...]) -> tuple[int, int]:
        """Return the position of the deepest known value along ``loc``.

        Parts of ``loc`` that are not keys in the document (a schema's union member names, for
        instance) are skipped rather than ending the search.
        """
        best: Path = ()
        probe: Path = ()
        for part in loc:
            candidate = (*probe, part)
            if candidate in self.marks:
                probe = candidate
                best = candidate
        return self.marks.get(best, (1, 1))

    def problem(
        self, loc: tuple[Any, ...], message: str, severity: str = "error", at_key: bool = False
    ) -> Problem:
        """Build a :class:`Problem` located at ``loc`` (at its key rather than its value if asked)."""
        line, col = (
            self.key_marks.get(tuple(loc)) or self.locate(loc) if at_key else self.locate(loc)
        )
        return Problem(self.path, line, col, message, severity)


def _scalar(node: yaml.ScalarNode) -> Any:
    """Resolve a scalar the YAML 1.2 core way (see the module docstring)."""
    value = node.value
    if node.style is not None:  # quoted or block scalar: always a string
        return value
    if _NULL.match(value):
        return None
    if _BOOL.match(value):
        return value.lower() == "true"
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    return value


_MAX_DEPTH = 32


def _build(node: yaml.Node, path: Path, positions: Positions, problems: list[Problem]) -> Any:
    line, col = node.start_mark.line + 1, node.start_mark.column + 1
    positions.marks[path] = (line, col)
    if len(path) > _MAX_DEPTH:  # also stops self-referencing anchors (&a [*a])
        problems.append(Problem(positions.path, line, col, "The document nests too deeply."))
        return None
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), positions, problems) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(
                    Problem(
                        positions.path, line, col, "A key must be a plain word, not a list or map."
                    )
                )
                continue
            key = key_node.value
            if key == "<<":
                problems.append(
                    Problem(
                        positions.path, line, col, "Merge keys (<<) are not supported in flows."
                    )
                )
                continue
            if key in result:
                problems.append(
                    Problem(
                        positions.path, line, col, f"The key {key!r} appears twice in this map."
                    )
                )
                continue
            positions.key_marks[(*path, key)] = (line, col)
            result[key] = _build(value_node, (*path, key), positions, problems)
        return result
    raise TypeError(
        f"unexpected YAML node {node!r}"
    )  # pragma: no cover - composer emits only 3 kinds


def parse(text: str, path: str) -> tuple[Any, Positions]:
    """Parse one YAML document; raise :class:`FlowLoadError` with located problems if it is bad."""
    positions = Positions(path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or exc.context or "unreadable YAML"
        message = f"This is not valid YAML: {reason}."
        if "\t" in text and "tab" in reason.lower():
            message += " Indent with spaces, not tabs."
        raise FlowLoadError([Problem(path, line, col, message)]) from None
    except yaml.YAMLError as exc:
        raise FlowLoadError([Problem(path, 1, 1, f"This is not valid YAML: {exc}.")]) from None
    if node is None:
        raise FlowLoadError(
            [Problem(path, 1, 1, "The file is empty; a flow needs start and nodes.")]
        )
    problems: list[Problem] = []
    data = _build(node, (), positions, problems)
    if problems:
        raise FlowLoadError(problems)
    return data, positions
