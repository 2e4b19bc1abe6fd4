"""Read flow YAML into plain Python values while remembering where every value came from.

The loader guards against the YAML traps that bite call-flow designers:

* Mapping keys are always strings. Under PyYAML's YAML 1.1 rules a keypad key ``1:`` would become
  the int ``1`` and ``no:``/``off:`` the boolean ``False``; here they stay ``"1"``, ``"no"``, ``"off"``.
* Only ``true``/``false`` are booleans. ``yes``, ``no``, ``on`` and ``off`` are plain words, so a
  speech choice ``no`` stays the word "no".
* Only plain decimal numbers are numbers. ``0123`` (an account number) is not read as octal 83,
  ``1:30`` is not read as the sexagesimal 90; both stay strings. A leading ``+`` marks a phone
  number, so an unquoted ``+14155550100`` stays that text instead of the int 14155550100.
* Duplicate keys are an error instead of the last one silently winning.
* An alias may not refer to the list or map that contains it, and aliases may not expand the
  document past ``MAX_VALUES`` values; either would otherwise build forever.

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
_INT = re.compile(r"^-?(?:0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^-?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")
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
    if node.style:  # quoted or block scalar: always a string (plain is None, or "" in libyaml)
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
MAX_VALUES = 100_000


@dataclass
class _Builder:
    """Turns composed YAML nodes into values, recording positions and problems on the way."""

    positions: Positions
    problems: list[Problem] = field(default_factory=list)
    ancestors: set[int] = field(default_factory=set)
    built: int = 0

    def problem(self, node: yaml.Node, message: str) -> None:
        mark = node.start_mark
        problem = Problem(self.positions.path, mark.line + 1, mark.column + 1, message)
        if problem not in self.problems:  # one anchor aliased twice is one mistake
            self.problems.append(problem)

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.positions.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        self.built += 1
        if self.built > MAX_VALUES:
            if self.built == MAX_VALUES + 1:
                self.problem(node, f"Aliases expand this document past {MAX_VALUES} values.")
            return None
        if len(path) > _MAX_DEPTH:
            self.problem(node, "The document nests too deeply.")
            return None
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node)
        if id(node) in self.ancestors:  # &a [*a]: composed as a cycle of nodes
            self.problem(node, "An alias inside this list or map refers back to it (recursive).")
            return None
        self.ancestors.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
        finally:
            self.ancestors.discard(id(node))
        raise TypeError(
            f"unexpected YAML node {node!r}"
        )  # pragma: no cover - composer emits only 3 kinds

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(key_node, "A key must be a plain word, not a list or map.")
                continue
            key = key_node.value
            if key == "<<":
                self.problem(key_node, "Merge keys (<<) are not supported in flows.")
                continue
            if key in result:
                self.problem(key_node, f"The key {key!r} appears twice in this map.")
                continue
            mark = key_node.start_mark
            self.positions.key_marks[(*path, key)] = (mark.line + 1, mark.column + 1)
            result[key] = self.build(value_node, (*path, key))
        return result


# libyaml's parser (when PyYAML was built with it) is about three times faster; both keep marks.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse(text: str, path: str) -> tuple[Any, Positions]:
    """Parse one YAML document; raise :class:`FlowLoadError` with located problems if it is bad."""
    positions = Positions(path)
    try:
        try:
            node = yaml.compose(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:
            # libyaml is quick but words its errors differently: let the pure-Python parser say
            # what is wrong, and where, in the messages designers and tests know.
            node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise FlowLoadError([_syntax_problem(exc, text, path)]) from None
    except yaml.YAMLError as exc:
        raise FlowLoadError([Problem(path, 1, 1, f"This is not valid YAML: {exc}.")]) from None
    if node is None:
        raise FlowLoadError(
            [Problem(path, 1, 1, "The file is empty; a flow needs start and nodes.")]
        )
    builder = _Builder(positions)
    data = builder.build(node, ())
    if builder.problems:
        raise FlowLoadError(builder.problems)
    return data, positions


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str, path: str) -> Problem:
    """A YAML syntax error as a sentence, located where the designer has to look."""
    mark = exc.problem_mark or exc.context_mark
    reason = exc.problem or exc.context or "unreadable YAML"
    opened = exc.context_mark
    if exc.context and exc.problem and opened is not None:
        if exc.context.startswith("while "):
            where = f"line {opened.line + 1}, column {opened.column + 1}"
            reason = f"{exc.problem} {exc.context} that starts at {where}"
            if "end of stream" in exc.problem or "<stream end>" in exc.problem:
                # the file ended inside a quote or bracket: point at where it opened
                mark = opened
        else:
            reason = f"{exc.context}, {exc.problem}"
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    message = f"This is not valid YAML: {reason}."
    if exc.problem_mark is not None and _char_at(text, exc.problem_mark) == "\t":
        message += " Indent with spaces, not tabs."
    return Problem(path, line, col, message)


def _char_at(text: str, mark: yaml.Mark) -> str:
    lines = text.splitlines()
    if mark.line < len(lines) and mark.column < len(lines[mark.line]):
        return lines[mark.line][mark.column]
    return ""
