"""Schema errors in a designer's words, at the line and column they come from.

Pydantic reports a failed union (a prompt part may be text, ``say``, ``play`` or ``pause``) as one
error per member, which would read as several contradictory problems. Only the errors of the
member that fits best are kept; unknown keys get a "did you mean" from the map they are in.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ivr.errors import Problem
from ivr.hours import HoursSpec
from ivr.languages import Messages
from ivr.schema import (
    BranchCase,
    Defaults,
    FlowSpec,
    GatherSpec,
    HttpSpec,
    Node,
    PausePart,
    PlayPart,
    ResumeSpec,
    RetrySpec,
    SayPart,
    TransferSpec,
    ValidateSpec,
)
from ivr.yamlsource import Positions


def schema_problems(exc: ValidationError, positions: Positions) -> list[Problem]:
    """One located problem per place the schema rejected, sorted by line and column."""
    seen: dict[tuple[int, int], Problem] = {}
    for found in _fitting_members([_Found.of(e, positions) for e in exc.errors()]):
        error = found.error
        message = _sentence(error, found.path, found.tags)
        if _comma_split(error, found.path, positions):
            message = _comma_sentence(error, found.path, positions)
        problem = positions.problem(found.path, message, at_key=error["type"] == "extra_forbidden")
        seen.setdefault((problem.line, problem.col), problem)
    return sorted(seen.values(), key=lambda p: (p.line, p.col))


@dataclass(frozen=True)
class _Found:
    """A schema error with its location split into the document path and the union members."""

    error: Any
    path: tuple[str | int, ...]
    tags: tuple[tuple[tuple[str | int, ...], str], ...]  # (where, member) for each union passed

    @property
    def mismatch(self) -> bool:
        """The value does not have the shape of the union member at all (a map for a string)."""
        return bool(self.tags) and self.tags[-1][0] == self.path

    @classmethod
    def of(cls, error: Any, positions: Positions) -> _Found:
        loc = tuple(error["loc"])
        path: tuple[str | int, ...] = ()
        tags: list[tuple[tuple[str | int, ...], str]] = []
        for i, part in enumerate(loc):
            is_missing_key = i == len(loc) - 1 and error["type"] == "missing"
            if (*path, part) in positions.marks or is_missing_key:
                path = (*path, part)
            else:
                tags.append((path, str(part)))
        return cls(error, path, tuple(tags))


def _fitting_members(found: list[_Found]) -> list[_Found]:
    """At each union, keep only the errors of the member the designer most likely meant.

    When no member of a union fits, pydantic reports every member's errors: a say part with a
    typo would also hear "Unknown key 'say'" from the play member. The likely member is one
    whose shape the value has (a map for a model), with the fewest errors.
    """
    depth = 0
    while True:
        unions: dict[tuple[str | int, ...], dict[str, list[_Found]]] = {}
        for item in found:
            if len(item.tags) > depth:
                where, member = item.tags[depth]
                unions.setdefault(where, {}).setdefault(member, []).append(item)
        if not unions:
            return found
        others: set[int] = set()
        for members in unions.values():
            best = min(
                members, key=lambda m: (all(f.mismatch for f in members[m]), len(members[m]))
            )
            others.update(id(f) for m, items in members.items() if m != best for f in items)
        found = [f for f in found if id(f) not in others]
        depth += 1


_MEMBER_MODELS: dict[str, type[BaseModel]] = {m.__name__: m for m in (SayPart, PlayPart, PausePart)}
_MODEL_UNDER_KEY: dict[str, type[BaseModel]] = {
    "gather": GatherSpec,
    "validate": ValidateSpec,
    "no_input": RetrySpec,
    "no_match": RetrySpec,
    "http": HttpSpec,
    "branch": BranchCase,
    "transfer": TransferSpec,
    "resume": ResumeSpec,
    "defaults": Defaults,
    "hours": HoursSpec,
    "messages": Messages,
}


def _known_keys(path: tuple[str | int, ...], tags: tuple[Any, ...]) -> list[str]:
    """The keys the map holding ``path`` may have, for a "Did you mean" suggestion."""
    parent = path[:-1]
    model: type[BaseModel] | None
    if tags and tags[-1][0] == parent and tags[-1][1] in _MEMBER_MODELS:
        model = _MEMBER_MODELS[tags[-1][1]]
    elif not parent:
        model = FlowSpec
    elif len(parent) == 2 and parent[0] == "nodes":
        model = Node
    elif len(parent) == 2 and parent[0] == "messages":  # a language's block (es-MX)
        model = Messages
    else:
        key = next((p for p in reversed(parent) if isinstance(p, str)), "")
        model = _MODEL_UNDER_KEY.get(key)
    if model is None:
        return []
    return sorted(f.alias or name for name, f in model.model_fields.items())


def _sentence(error: Any, path: tuple[str | int, ...], tags: tuple[Any, ...]) -> str:
    where = ".".join(str(part) for part in path)
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(path[-1])
        hint = difflib.get_close_matches(key, _known_keys(path, tags), n=1)
        suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
        return f"Unknown key {key!r}.{suggestion}"
    if kind == "missing":
        return f"{where} is required."
    if kind == "enum":  # a setting with a few named values: name them, and the likely one
        choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        hint = difflib.get_close_matches(str(error["input"]), choices, n=1)
        suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
        named = " or ".join(choices)
        return f"{where} must be {named}, not {error['input']!r}.{suggestion}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _comma_split(error: Any, path: tuple[str | int, ...], positions: Positions) -> bool:
    """The key at ``path`` is text a comma cut off the value before it, in a ``{...}`` map.

    In ``{prompt: Sorry, I didn't get that.}`` YAML ends ``prompt`` at the comma and reads
    ``I didn't get that.`` as a key with no value.
    """
    return (
        bool(path)
        and isinstance(path[-1], str)
        and path[:-1] in positions.flow_maps
        and error.get("input", "") is None
        and path in positions.key_marks
        and _previous_key(path, positions) is not None
    )


def _previous_key(path: tuple[str | int, ...], positions: Positions) -> str | None:
    """The key written just before the one at ``path`` in the same map."""
    mark = positions.key_marks[path]
    before = [
        (other.index, key[-1])
        for key, other in positions.key_marks.items()
        if key[:-1] == path[:-1] and other.index < mark.index
    ]
    return str(max(before)[1]) if before else None


def _comma_sentence(error: Any, path: tuple[str | int, ...], positions: Positions) -> str:
    text, previous = str(path[-1]), _previous_key(path, positions)
    if error["type"] != "extra_forbidden":  # a map of the designer's own keys, such as on
        return (
            f"{text!r} has no value: in a {{...}} map every entry is key: value. If it is the "
            f"end of the value of {previous!r}, the comma before it cut that value short: put "
            "the whole value in quotes."
        )
    return (
        f"{text!r} is read as a key of its own: in a {{...}} map a comma ends a value, so "
        f"{previous!r} stops at the comma before it. Put the whole text in quotes, "
        f'e.g. {{{previous}: "..., {text}"}}.'
    )
