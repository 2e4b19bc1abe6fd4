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

import copy
import re
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from ivr.errors import FlowLoadError, Problem

_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^-?(?:0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^-?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_MAYBE_NOT_TEXT = frozenset("~nNtTfF-.0123456789")  # how a null, boolean or number can start

Path = tuple[str | int, ...]


@dataclass
class Positions:
    """Where each value of a parsed document starts, by path; 1-based line and column."""

    path: str
    # yaml.Mark objects as the parser made them (0-based); turned into positions when asked for
    marks: dict[Path, Any] = field(default_factory=dict)
    key_marks: dict[Path, Any] = field(default_factory=dict)
    flow_maps: set[Path] = field(default_factory=set)  # maps written inline, as {a: 1, b: 2}

    def at(self, path: Path) -> tuple[int, int] | None:
        """Where the value at ``path`` starts (1-based line and column), if it exists."""
        mark = self.marks.get(path)
        return _position(mark) if mark is not None else None

    def key_at(self, path: Path) -> tuple[int, int] | None:
        """Where the key of the value at ``path`` starts, if it exists."""
        mark = self.key_marks.get(path)
        return _position(mark) if mark is not None else None

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
        return _position(self.marks.get(best))

    def problem(
        self, loc: tuple[Any, ...], message: str, severity: str = "error", at_key: bool = False
    ) -> Problem:
        """Build a :class:`Problem` located at ``loc`` (at its key rather than its value if asked)."""
        key_mark = self.key_marks.get(tuple(loc)) if at_key else None
        line, col = _position(key_mark) if key_mark is not None else self.locate(loc)
        return Problem(self.path, line, col, message, severity)


def _position(mark: Any) -> tuple[int, int]:
    """A parser mark as a 1-based (line, column); the document's start without one."""
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _scalar(node: yaml.ScalarNode) -> Any:
    """Resolve a scalar the YAML 1.2 core way (see the module docstring)."""
    value = node.value
    if node.style:  # quoted or block scalar: always a string (plain is None, or "" in libyaml)
        return value
    if value and value[0] not in _MAYBE_NOT_TEXT:  # most scalars are words: no pattern to try
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


class _Frame:
    """An open list or map while its events arrive."""

    __slots__ = ("anchor", "count", "key", "key_log", "log", "path", "skip", "value")

    def __init__(self, value: Any, path: Path, anchor: str | None, builder: _Builder) -> None:
        self.value = value
        self.path = path
        self.anchor = anchor
        self.key: str | None = None  # in a map, the key whose value comes next
        self.skip = False  # in a map, the next value is dropped (its key was refused)
        self.count = builder.built  # values built before this one
        self.log = len(builder.mark_log)  # where this value's positions start in the logs
        self.key_log = len(builder.key_log)


@dataclass(frozen=True)
class _Anchor:
    """What an anchor names: its value, how many values and levels it holds, its positions."""

    value: Any
    size: int = 1
    text: str | None = None  # a scalar's text, for an alias used as a key
    depth: int = 0  # levels of lists and maps below the value
    marks: tuple[tuple[Path, Any], ...] = ()  # positions inside it, relative to it
    key_marks: tuple[tuple[Path, Any], ...] = ()


_PLACEHOLDER = _Anchor(None)


class _Builder:
    """Builds values straight from the parser's events, recording positions and problems.

    Building from events rather than from a composed node graph is several times faster on big
    flows: no node objects, no tag resolution (scalars are typed here, the YAML 1.2 way). An
    alias is a copy of its anchor's value, with the anchor's positions under the alias's path,
    counted and depth-checked as if it were written out.
    """

    def __init__(self, positions: Positions) -> None:
        self.positions = positions
        self.problems: list[Problem] = []
        self.anchors: dict[str, _Anchor] = {}
        self.open_anchors: dict[str, Any] = {}  # anchor of an unfinished list or map -> its mark
        self.built = 0
        self.mark_log: list[tuple[Path, Any]] = []  # every value position, in document order
        self.key_log: list[tuple[Path, Any]] = []

    def problem(self, mark: Any, message: str) -> None:
        problem = Problem(self.positions.path, mark.line + 1, mark.column + 1, message)
        if problem not in self.problems:  # one anchor aliased twice is one mistake
            self.problems.append(problem)

    def build(self, events: Any) -> Any:
        """The document's value; raises :class:`_NeedsComposer` for what the composer must word."""
        stack: list[_Frame] = []
        skipping = 0  # depth inside a subtree being dropped
        result: Any = None
        documents = 0
        for event in events:
            kind = type(event)
            if skipping:  # inside a dropped subtree: follow its nesting, note its anchors
                if kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                    skipping += 1
                elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                    skipping -= 1
                if kind is not yaml.AliasEvent and getattr(event, "anchor", None) is not None:
                    text = event.value if kind is yaml.ScalarEvent else None
                    self.remember(event.anchor, replace(_PLACEHOLDER, text=text))
                continue
            if kind is yaml.ScalarEvent:
                key_frame = _awaiting_key(stack)
                if key_frame is not None:
                    self.remember(event.anchor, _Anchor(_scalar(event), text=event.value))
                    self.key(key_frame, event.value, event.start_mark)
                    continue
                path = self.locate(stack, event.start_mark)
                value = _scalar(event)
                self.count(1, event.start_mark)
                if len(path) > _MAX_DEPTH:
                    self.problem(event.start_mark, "The document nests too deeply.")
                    value = None
                self.remember(event.anchor, _Anchor(value, text=event.value))
                result = self.place(stack, value, result)
            elif kind is yaml.AliasEvent:
                key_frame = _awaiting_key(stack)
                anchored = self.alias(event)
                if key_frame is not None:
                    if anchored is not None and anchored.text is not None:
                        self.key(key_frame, anchored.text, event.start_mark)
                    else:
                        self.refuse_key(key_frame, event.start_mark)
                    continue
                path = self.locate(stack, event.start_mark)
                value = None
                if anchored is not None:
                    if len(path) + anchored.depth > _MAX_DEPTH:
                        self.problem(event.start_mark, "The document nests too deeply.")
                    else:
                        value = self.expand(anchored, path)
                result = self.place(stack, value, result)
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                key_frame = _awaiting_key(stack)
                if key_frame is not None:
                    self.refuse_key(key_frame, event.start_mark)
                    skipping = 1
                    self.remember(event.anchor, _PLACEHOLDER)
                    continue
                path = self.locate(stack, event.start_mark)
                self.count(1, event.start_mark)
                if len(path) > _MAX_DEPTH:
                    self.problem(event.start_mark, "The document nests too deeply.")
                    self.remember(event.anchor, _PLACEHOLDER)
                    result = self.place(stack, None, result)
                    skipping = 1
                    continue
                if event.anchor is not None:
                    self.check_new(event.anchor)
                    self.open_anchors[event.anchor] = event.start_mark
                if kind is yaml.MappingStartEvent and event.flow_style:
                    self.positions.flow_maps.add(path)
                container: Any = {} if kind is yaml.MappingStartEvent else []
                stack.append(_Frame(container, path, event.anchor, self))
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                frame = stack.pop()
                if frame.anchor is not None:
                    self.open_anchors.pop(frame.anchor, None)
                    self.remember(frame.anchor, self.anchored(frame))
                result = self.place(stack, frame.value, result)
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise _NeedsComposer  # "expected a single document": the composer's words
        return result

    def locate(self, stack: list[_Frame], mark: Any) -> Path:
        """The path of the value starting at ``mark``, its position recorded."""
        path = _child(stack)
        self.positions.marks[path] = mark
        self.mark_log.append((path, mark))
        return path

    def count(self, values: int, mark: Any) -> None:
        """Count ``values`` more values; past the limit is a problem (once)."""
        before = self.built
        self.built += values
        if before <= MAX_VALUES < self.built:
            self.problem(mark, f"Aliases expand this document past {MAX_VALUES} values.")

    def key(self, frame: _Frame, key: str, mark: Any) -> None:
        frame.key, frame.skip = key, False
        if key == "<<":
            self.problem(mark, "Merge keys (<<) are not supported in flows.")
            frame.skip = True
        elif key in frame.value:
            first = self.positions.key_marks.get((*frame.path, key))
            where = f" (first at line {first.line + 1}, column {first.column + 1})" if first else ""
            self.problem(
                mark, f"The key {key!r} appears twice in this map{where}; keep one of them."
            )
            frame.skip = True
        else:
            path = (*frame.path, key)
            self.positions.key_marks[path] = mark
            self.key_log.append((path, mark))

    def refuse_key(self, frame: _Frame, mark: Any) -> None:
        self.problem(mark, "A key must be a plain word, not a list or map.")
        frame.key, frame.skip = "", True

    def alias(self, event: Any) -> _Anchor | None:
        """What an alias stands for, or ``None`` (with a problem) when it cannot be used."""
        name = event.anchor
        opened = self.open_anchors.get(name)
        if opened is not None:  # &a [*a]: the list or map would contain itself
            self.problem(opened, "An alias inside this list or map refers back to it (recursive).")
            return None
        anchored = self.anchors.get(name)
        if anchored is None:
            raise _NeedsComposer  # "found undefined alias": the composer's words
        self.count(anchored.size, event.start_mark)
        return None if self.built > MAX_VALUES else anchored

    def expand(self, anchored: _Anchor, path: Path) -> Any:
        """A copy of an anchor's value at ``path``, with its positions."""
        marks, key_marks = self.positions.marks, self.positions.key_marks
        for relative, mark in anchored.marks:
            marks[(*path, *relative)] = mark
            self.mark_log.append(((*path, *relative), mark))
        for relative, mark in anchored.key_marks:
            key_marks[(*path, *relative)] = mark
            self.key_log.append(((*path, *relative), mark))
        value = anchored.value
        return copy.deepcopy(value) if isinstance(value, dict | list) else value

    def anchored(self, frame: _Frame) -> _Anchor:
        """What a finished anchored list or map names."""
        depth = len(frame.path)
        marks = tuple((p[depth:], m) for p, m in self.mark_log[frame.log :] if len(p) > depth)
        key_marks = tuple((p[depth:], m) for p, m in self.key_log[frame.key_log :])
        deepest = max((len(p) for p, _ in marks), default=0)
        size = self.built - frame.count
        return _Anchor(frame.value, size, None, deepest, marks, key_marks)

    def check_new(self, anchor: str) -> None:
        if anchor in self.anchors or anchor in self.open_anchors:
            raise _NeedsComposer  # "found duplicate anchor": the composer's words

    def remember(self, anchor: str | None, anchored: _Anchor) -> None:
        if anchor is not None:
            if anchor not in self.open_anchors:  # a list or map was checked when it opened
                self.check_new(anchor)
            self.anchors[anchor] = anchored

    def place(self, stack: list[_Frame], value: Any, result: Any) -> Any:
        """Put a finished value in its list or map; the root value is the result."""
        if not stack:
            return value
        frame = stack[-1]
        if isinstance(frame.value, list):
            frame.value.append(value)
        else:
            if not frame.skip and frame.key is not None:
                frame.value[frame.key] = value
            frame.key, frame.skip = None, False
        return result


class _NeedsComposer(Exception):
    """The document has a mistake whose wording PyYAML's composer owns."""


def _awaiting_key(stack: list[_Frame]) -> _Frame | None:
    """The open map whose next event is a key, if that is where the parser is."""
    if stack:
        frame = stack[-1]
        if frame.key is None and isinstance(frame.value, dict):
            return frame
    return None


def _child(stack: list[_Frame]) -> Path:
    """The path of the value the next event starts."""
    if not stack:
        return ()
    frame = stack[-1]
    if isinstance(frame.value, list):
        return (*frame.path, len(frame.value))
    return (*frame.path, frame.key if frame.key is not None else "")


# libyaml's parser (when PyYAML was built with it) is several times faster; both keep marks.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse(text: str, path: str) -> tuple[Any, Positions]:
    """Parse one YAML document; raise :class:`FlowLoadError` with located problems if it is bad."""
    positions = Positions(path)
    builder = _Builder(positions)
    try:
        try:
            data = builder.build(yaml.parse(text, Loader=_FAST_LOADER))
        except (yaml.YAMLError, _NeedsComposer):
            # libyaml is quick but words its errors differently: let the pure-Python parser say
            # what is wrong, and where, in the messages designers and tests know.
            yaml.compose(text, Loader=yaml.SafeLoader)
            raise FlowLoadError([Problem(path, 1, 1, "This is not valid YAML.")]) from None
    except RecursionError:  # the pure-Python parser recurses once per level of nesting
        raise FlowLoadError([Problem(path, 1, 1, "The document nests too deeply.")]) from None
    except yaml.MarkedYAMLError as exc:
        raise FlowLoadError([_syntax_problem(exc, text, path)]) from None
    except yaml.YAMLError as exc:
        raise FlowLoadError([Problem(path, 1, 1, f"This is not valid YAML: {exc}.")]) from None
    if builder.problems:
        raise FlowLoadError(builder.problems)
    if data is None and not positions.marks:
        raise FlowLoadError(
            [Problem(path, 1, 1, "The file is empty; a flow needs start and nodes.")]
        )
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
    escape = _UNKNOWN_ESCAPE.search(exc.problem or "")
    if escape and "double-quoted" in (exc.context or ""):
        letter = escape.group(1)
        message += (
            f" In double quotes a backslash starts an escape, and \\{letter} is not one. For a "
            f"pattern such as '^\\{letter}+$' use single quotes, where a backslash is just a "
            f"backslash (or write \\\\{letter} in double quotes)."
        )
    return Problem(path, line, col, message)


_UNKNOWN_ESCAPE = re.compile(r"unknown escape character '(.)'")


def _char_at(text: str, mark: yaml.Mark) -> str:
    lines = text.splitlines()
    if mark.line < len(lines) and mark.column < len(lines[mark.line]):
        return lines[mark.line][mark.column]
    return ""
