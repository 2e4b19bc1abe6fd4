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
from dataclasses import dataclass, field
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

    __slots__ = ("anchor", "key", "key_mark", "mark", "path", "skip", "start_count", "value")

    def __init__(self, value: Any, path: Path, anchor: str | None, mark: Any, count: int) -> None:
        self.value = value
        self.path = path
        self.anchor = anchor
        self.mark = mark
        self.key: str | None = None  # in a map, the key whose value comes next
        self.key_mark: Any = None
        self.skip = False  # in a map, the next value is dropped (its key was refused)
        self.start_count = count


class _Builder:
    """Builds values straight from the parser's events, recording positions and problems.

    Building from events rather than from a composed node graph is several times faster on big
    flows: no node objects, no tag resolution (scalars are typed here, the YAML 1.2 way).
    """

    def __init__(self, positions: Positions) -> None:
        self.positions = positions
        self.problems: list[Problem] = []
        self.anchors: dict[str, tuple[Any, int, str | None]] = {}  # value, size, scalar text
        self.open_anchors: dict[str, Any] = {}  # anchor of an unfinished list or map -> its mark
        self.built = 0

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
            if skipping:  # inside a dropped subtree: only follow its nesting
                if kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                    skipping += 1
                elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                    skipping -= 1
                continue
            if kind is yaml.ScalarEvent:
                key_frame = _awaiting_key(stack)
                if key_frame is not None:
                    self.remember(event.anchor, _scalar(event), 1, event.value)
                    self.key(key_frame, event.value, event.start_mark)
                    continue
                path = _child(stack)
                value = self.scalar(event, path)
                self.remember(event.anchor, value, 1, event.value)
                result = self.place(stack, value, result)
            elif kind is yaml.AliasEvent:
                key_frame = _awaiting_key(stack)
                anchored = self.alias(event)
                if key_frame is not None:
                    if anchored is not None and anchored[2] is not None:
                        self.key(key_frame, anchored[2], event.start_mark)
                    else:
                        self.refuse_key(key_frame, event.start_mark)
                    continue
                path = _child(stack)
                self.positions.marks[path] = event.start_mark
                value = None
                if anchored is not None:
                    value = anchored[0]
                    if isinstance(value, dict | list):
                        value = copy.deepcopy(value)
                result = self.place(stack, value, result)
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                key_frame = _awaiting_key(stack)
                if key_frame is not None:
                    self.refuse_key(key_frame, event.start_mark)
                    skipping = 1
                    continue
                path = _child(stack)
                self.positions.marks[path] = event.start_mark
                self.built += 1
                if len(path) > _MAX_DEPTH:
                    self.problem(event.start_mark, "The document nests too deeply.")
                    result = self.place(stack, None, result)
                    skipping = 1
                    continue
                container: Any = {} if kind is yaml.MappingStartEvent else []
                if event.anchor is not None:
                    self.open_anchors[event.anchor] = event.start_mark
                stack.append(_Frame(container, path, event.anchor, event.start_mark, self.built))
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                frame = stack.pop()
                if frame.anchor is not None:
                    self.open_anchors.pop(frame.anchor, None)
                    self.remember(frame.anchor, frame.value, self.built - frame.start_count + 1)
                result = self.place(stack, frame.value, result)
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise _NeedsComposer  # "expected a single document": the composer's words
        return result

    def scalar(self, event: Any, path: Path) -> Any:
        self.positions.marks[path] = event.start_mark
        self.built += 1
        if self.built == MAX_VALUES + 1:
            self.problem(
                event.start_mark, f"Aliases expand this document past {MAX_VALUES} values."
            )
        return _scalar(event)

    def key(self, frame: _Frame, key: str, mark: Any) -> None:
        frame.key, frame.key_mark, frame.skip = key, mark, False
        if key == "<<":
            self.problem(mark, "Merge keys (<<) are not supported in flows.")
            frame.skip = True
        elif key in frame.value:
            self.problem(mark, f"The key {key!r} appears twice in this map.")
            frame.skip = True
        else:
            self.positions.key_marks[(*frame.path, key)] = mark

    def refuse_key(self, frame: _Frame, mark: Any) -> None:
        self.problem(mark, "A key must be a plain word, not a list or map.")
        frame.key, frame.key_mark, frame.skip = "", mark, True

    def alias(self, event: Any) -> tuple[Any, int, str | None] | None:
        """What an alias stands for, or ``None`` (with a problem) when it cannot be used."""
        name = event.anchor
        opened = self.open_anchors.get(name)
        if opened is not None:  # &a [*a]: the list or map would contain itself
            self.problem(opened, "An alias inside this list or map refers back to it (recursive).")
            return None
        anchored = self.anchors.get(name)
        if anchored is None:
            raise _NeedsComposer  # "found undefined alias": the composer's words
        before = self.built
        self.built += anchored[1]
        if before <= MAX_VALUES < self.built:
            self.problem(
                event.start_mark, f"Aliases expand this document past {MAX_VALUES} values."
            )
        return None if self.built > MAX_VALUES else anchored

    def remember(self, anchor: str | None, value: Any, size: int, text: str | None = None) -> None:
        if anchor is not None:
            self.anchors[anchor] = (value, size, text)

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
    return Problem(path, line, col, message)


def _char_at(text: str, mark: yaml.Mark) -> str:
    lines = text.splitlines()
    if mark.line < len(lines) and mark.column < len(lines[mark.line]):
        return lines[mark.line][mark.column]
    return ""
