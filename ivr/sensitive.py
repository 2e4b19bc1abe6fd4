"""Sensitive paths: which of a session's values are secrets, and how to take them out and back.

A flow's ``sensitive:`` list names variables (``pin``), paths into a variable that holds a
mapping (``arrangement.dob``, inside a data dip's result) or whole data-dip results
(``arrangement``). A path reaches through mappings only: a list inside a result is sensitive as a
whole or not at all. Everything here is pure; the session store seals what :func:`take` takes
out (:mod:`context.sealing`), and the engine uses the same functions to hold values back from a
caller who is not trusted yet and to mask answers, contexts and events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

MASK = "***"


def covers(paths: Iterable[str], key: str) -> bool:
    """Whether ``key`` (a variable or dotted path) is a sensitive path or lies inside one."""
    return any(key == path or key.startswith(path + ".") for path in paths)


def masked(paths: Iterable[str], key: str, value: Any) -> Any:
    """``value`` (found at ``key``) with every sensitive part replaced by :data:`MASK`.

    A key inside a sensitive path is masked whole; a key above one (``arrangement`` when
    ``arrangement.dob`` is sensitive) keeps its other parts.
    """
    paths = tuple(paths)
    if covers(paths, key):
        return MASK
    inner = [path[len(key) + 1 :] for path in paths if path.startswith(key + ".")]
    if not inner or not isinstance(value, Mapping):
        return value
    return _mask_inside(value, inner)


def _mask_inside(value: Mapping[str, Any], inner: list[str]) -> dict[str, Any]:
    result = dict(value)
    for path in inner:
        head, _, rest = path.partition(".")
        if head not in result:
            continue
        if not rest:
            result[head] = MASK
        elif isinstance(result[head], Mapping):
            result[head] = _mask_inside(result[head], [rest])
    return result


def take(
    paths: Iterable[str], variables: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``variables`` into (what is left, the values at sensitive paths keyed by path).

    Mappings on the way to a taken value are copied, never changed in place: the session the
    values came from is left as it was.
    """
    left: dict[str, Any] = dict(variables)
    taken: dict[str, Any] = {}
    for path in sorted(paths, key=len):  # a whole variable before paths inside it
        if covers(taken, path):
            continue
        found, value = _pop(left, path.split("."))
        if found:
            taken[path] = value
    return left, taken


def _pop(scope: dict[str, Any], parts: list[str]) -> tuple[bool, Any]:
    head = parts[0]
    if head not in scope:
        return False, None
    if len(parts) == 1:
        return True, scope.pop(head)
    inner = scope[head]
    if not isinstance(inner, Mapping):
        return False, None
    copy = dict(inner)
    found, value = _pop(copy, parts[1:])
    if found:
        scope[head] = copy
    return found, value


def put(variables: Mapping[str, Any], taken: Mapping[str, Any]) -> dict[str, Any]:
    """``variables`` with the values :func:`take` took put back at their paths."""
    result: dict[str, Any] = dict(variables)
    for path, value in sorted(taken.items(), key=lambda item: len(item[0])):
        _set(result, path.split("."), value)
    return result


def _set(scope: dict[str, Any], parts: list[str], value: Any) -> None:
    head = parts[0]
    if len(parts) == 1:
        scope[head] = value
        return
    inner = scope.get(head)
    copy = dict(inner) if isinstance(inner, Mapping) else {}
    _set(copy, parts[1:], value)
    scope[head] = copy


def has(variables: Mapping[str, Any], path: str) -> bool:
    """Whether ``variables`` holds a value at ``path``."""
    scope: Any = variables
    for part in path.split("."):
        if not isinstance(scope, Mapping) or part not in scope:
            return False
        scope = scope[part]
    return True


def texts(values: Iterable[Any]) -> Iterator[str]:
    """The text of every scalar inside ``values`` (to mask wherever it shows up again)."""
    pending = list(values)
    while pending:
        value = pending.pop()
        if isinstance(value, Mapping):
            pending.extend(value.values())
        elif isinstance(value, list | tuple):
            pending.extend(value)
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value)
            if text:
                yield text
