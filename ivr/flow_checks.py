"""Checks of a flow's shape that catch, at load time, what a designer would otherwise hear on a call.

Each check reads a validated :class:`~ivr.schema.FlowSpec` and says, at ``file:line:col``:

* a loop of nodes that never asks the caller anything and has no way out (an error: every call
  that enters it would go round until the engine's loop guard hangs up), or one that can only be
  left by a branch condition (a warning);
* a gather whose retries can run out with no ``then`` and no flow ``fallback``, so the caller
  hears the built-in goodbye (a warning);
* a ``say`` (or ``play``) written below a node's ``branch``: it is spoken to every caller before
  the branch is taken, though it reads as what callers no case catches hear (a warning);
* a ``wait_for`` whose ``on_timeout`` leads back to it without asking the caller anything: each
  return starts the wait afresh, so it never times out and a caller whose text failed holds
  until they hang up (a warning).
"""

from __future__ import annotations

from collections.abc import Iterator

from ivr.errors import Problem
from ivr.schema import FlowSpec, Node, RetrySpec
from ivr.yamlsource import Positions

MAX_HOPS = 64  # the engine's loop guard (ivr.engine.MAX_HOPS), named in messages


def errors(spec: FlowSpec, positions: Positions) -> list[Problem]:
    """Problems that stop a flow from loading."""
    return [p for p in _loops(spec, positions) if p.severity == "error"]


def warnings(spec: FlowSpec, positions: Positions) -> list[Problem]:
    """Findings a designer should see that do not stop a flow from loading."""
    return [
        *(p for p in _loops(spec, positions) if p.severity == "warning"),
        *_retries_without_exit(spec, positions),
        *_said_before_branch(spec, positions),
        *_endless_waits(spec, positions),
    ]


# ---- loops that ask nothing -----------------------------------------------------------------
def _waits(node: Node) -> bool:
    """The node ends the engine's walk: it asks, records, waits for a page, hands over or
    hangs up."""
    return bool(
        node.gather or node.transfer or node.hangup or node.record or node.wait_for or node.use
    )


def _steps(spec: FlowSpec) -> dict[str, list[str]]:
    """For every node that does not wait, the nodes the engine may walk to next in the same turn."""
    return {
        name: [target for _, target in node.targets() if target in spec.nodes]
        for name, node in spec.nodes.items()
        if not _waits(node)
    }


def _cycles(steps: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected groups of ``steps`` that go round (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in steps:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            name, i = work[-1]
            targets = [t for t in steps.get(name, []) if t in steps]
            if i < len(targets):
                work[-1] = (name, i + 1)
                target = targets[i]
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, 0))
                elif target in on_stack:
                    low[name] = min(low[name], index[target])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[name])
            if low[name] == index[name]:
                group: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == name:
                        break
                if len(group) > 1 or name in steps.get(name, []):
                    found.append(group)
    return found


def _can_leave(spec: FlowSpec, group: set[str]) -> bool:
    """Some node of ``group`` can end the walk or lead out of it, at least on some calls."""
    for name in group:
        node = spec.nodes[name]
        if any(target not in group for _, target in node.targets()):
            return True
        if node.http or node.verified:  # a dip's failure gives up; a verified node returns
            return True
        if node.branch and not node.following:  # no case true: the call ends here
            return True
    return False


def _loops(spec: FlowSpec, positions: Positions) -> Iterator[Problem]:
    order = {name: i for i, name in enumerate(spec.nodes)}
    for group in _cycles(_steps(spec)):
        members = sorted(group, key=order.__getitem__)
        first = members[0]
        named = ", ".join(repr(m) for m in members)
        if _can_leave(spec, set(group)):
            yield positions.problem(
                ("nodes", first),
                f"Nodes {named} can go round without asking the caller anything; unless a "
                f"branch leaves within {MAX_HOPS} steps the caller hears the built-in goodbye. "
                "Put a gather, transfer or hangup in the loop, or make sure a branch leaves it.",
                "warning",
                at_key=True,
            )
        else:
            yield positions.problem(
                ("nodes", first),
                f"Nodes {named} go round forever without asking the caller anything, and "
                "nothing leads out: every call that gets here would be hung up after "
                f"{MAX_HOPS} steps. Put a gather in the loop or send one of them elsewhere.",
                at_key=True,
            )


# ---- retries that run out into the built-in goodbye -----------------------------------------
_KINDS = {"no_input": "says nothing", "no_match": "gives no usable answer"}


def _retries_without_exit(spec: FlowSpec, positions: Positions) -> Iterator[Problem]:
    for name, node in spec.nodes.items():
        if not node.gather or (spec.fallback and spec.fallback != name):
            continue
        stranded = [
            kind
            for kind in _KINDS
            if (getattr(node, kind) or getattr(spec.defaults, kind) or RetrySpec()).then is None
        ]
        if not stranded:
            continue
        who = " or ".join(_KINDS[kind] for kind in stranded)
        keys = " and ".join(f"{kind}.then" for kind in stranded)
        where = ("nodes", name, stranded[0] if getattr(node, stranded[0]) else "gather")
        fallback = (
            "a fallback other than this node"
            if spec.fallback == name
            else "a flow-wide fallback node"
        )
        yield positions.problem(
            where,
            f"A caller who {who} at {name!r} after the last retry hears the built-in goodbye "
            f"and is hung up on. Add {keys} here, under defaults, or {fallback}.",
            "warning",
            at_key=True,
        )


# ---- speech before a branch -----------------------------------------------------------------
def _said_before_branch(spec: FlowSpec, positions: Positions) -> Iterator[Problem]:
    """A ``say`` or ``play`` written after a node's ``branch``, as if it were the no-case path.

    The engine speaks a node's parts before it looks at the branch, so every caller hears them.
    Written above the branch that is plain to see (a greeting before a check); written below
    it, the text reads as what a caller hears when no case is true.
    """
    for name, node in spec.nodes.items():
        branch = positions.key_marks.get(("nodes", name, "branch"))
        if not node.branch or branch is None:
            continue
        for key in ("say", "play"):
            mark = positions.key_marks.get(("nodes", name, key))
            if mark is not None and mark.index > branch.index:
                yield positions.problem(
                    ("nodes", name, key),
                    f"Node {name!r} speaks its {key} before the branch, although it is written "
                    "after it: every caller hears it, whichever case is taken. Move it above "
                    "branch if that is meant; if it is for callers no case catches, put it in "
                    "the node next goes to.",
                    "warning",
                    at_key=True,
                )


# ---- waits that never end -------------------------------------------------------------------
def _endless_waits(spec: FlowSpec, positions: Positions) -> Iterator[Problem]:
    steps = _steps(spec)
    for name, node in spec.nodes.items():
        if node.wait_for is None:
            continue
        seen: set[str] = set()
        todo = [node.wait_for.on_timeout]
        while todo:
            target = todo.pop()
            if target == name:
                yield positions.problem(
                    ("nodes", name, "wait_for", "on_timeout"),
                    f"The wait at {name!r} never times out: its on_timeout comes back to it "
                    "without asking the caller anything, and each return waits afresh. Ask "
                    "first (a gather), or go on elsewhere.",
                    "warning",
                )
                break
            if target in seen or target not in steps:  # asked, hung up, or not a node
                continue
            seen.add(target)
            todo.extend(steps[target])
