"""A call's failed tries per gather node: counts, the raw answers that failed, and their limits.

A session keeps ``attempts[node] = {no_input, no_match, inputs}`` for the whole call (entering a
node again does not reset it, unlike the per-visit counters that drive ``retries``). ``inputs``
holds the latest failed answers as heard (digits, or the recogniser's text), at most
:data:`MAX_INPUTS` of them, each cut to :data:`MAX_INPUT_CHARS`; an answer at a node that saves a
sensitive variable is kept as ``"***"`` only. Templates and conditions read them as
``attempts.<node>.no_match``, ``attempts.<node>.no_input`` and ``attempts.<node>.inputs``, and the
handoff bundle carries them to the agent. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any, Literal

from ivr import sensitive

MAX_INPUTS = 5  # failed answers kept per node: the latest ones
MAX_INPUT_CHARS = 40  # an answer is cut to this many characters

Kind = Literal["no_input", "no_match"]


def counted(
    attempts: Mapping[str, Any],
    node: str,
    kind: Kind,
    heard: str | None = None,
    secret: bool = False,
) -> dict[str, Any]:
    """``attempts`` with one more ``kind`` at ``node`` and, if given, the answer ``heard``.

    ``secret`` says the node saves a sensitive variable: the answer is kept as ``"***"``.
    """
    tried = attempts.get(node)
    entry = dict(tried) if isinstance(tried, Mapping) else {}
    entry[kind] = _count(entry.get(kind)) + 1
    if heard:
        kept = sensitive.MASK if secret else heard[:MAX_INPUT_CHARS]
        entry["inputs"] = [*_inputs(entry.get("inputs")), kept][-MAX_INPUTS:]
    return {**attempts, node: entry}


def of(attempts: Mapping[str, Any], node: str) -> dict[str, Any]:
    """The tries at ``node`` in a fixed shape: ``{no_input, no_match, inputs}`` (zeros if none)."""
    tried = attempts.get(node)
    entry: Mapping[str, Any] = tried if isinstance(tried, Mapping) else {}
    return {
        "no_input": _count(entry.get("no_input")),
        "no_match": _count(entry.get("no_match")),
        "inputs": _inputs(entry.get("inputs")),
    }


class Tries(dict[str, dict[str, Any]]):
    """What templates see as ``attempts``: the nodes tried so far, and zeros for any other node
    of the flow (so ``attempts.menu.no_match > 1`` is false, not an error, before any try).

    A plain dict of the tried nodes underneath: a ``set`` that copies it stores only those.
    """

    def __init__(self, nodes: Container[str], attempts: Mapping[str, Any]) -> None:
        super().__init__((str(name), of(attempts, str(name))) for name in attempts)
        self._nodes = nodes

    def __missing__(self, node: str) -> dict[str, Any]:
        if node in self._nodes:
            return of({}, node)
        raise KeyError(node)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _inputs(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item[:MAX_INPUT_CHARS] for item in value if isinstance(item, str)][-MAX_INPUTS:]
