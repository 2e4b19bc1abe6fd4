"""Reusable blocks: a few nodes written once (``FLOWS_DIR/blocks/<name>.yaml``) and used from
several places and flows, with parameters and named exits.

A block file looks like a small flow::

    description: Ask for the caller's date of birth and check it.
    params:
      expected: {description: "the date of birth on file, as eight digits"}
      tries: {default: 2}
    exits: [verified, failed]
    start: ask
    nodes:
      ask:
        gather: {prompt: "Please key in your date of birth: two digits for the day, ...", num_digits: 8}
        save_as: dob
        next: check
      check:
        branch: [{if: "dob == params.expected", then: verified}]
        next: failed

A flow uses it from a node that names the block, its parameters (templates, evaluated when the
call enters the block) and where each exit goes::

    check_dob:
      use: verify_dob
      with: {expected: "{{ account.dob }}"}
      exits: {verified: menu, failed: agent}

Inside the block, ``params.<name>`` reads a parameter, and an exit's name is a target like a node's.
When the flow loads, every use is expanded: the block's nodes become nodes of the flow named
``<use node>.<block node>`` (``check_dob.ask``: a dot, which no node of a flow file may hold, so they
never clash), their exits lead where the use says. Variables a block saves are the flow's (the
block's file names them), so the flow reads ``dob`` after the block; no hand-made return
variables. A block is validated as its own file (problems point into it); a use is checked in the
flow's file (an unknown block, parameter or exit, a missing parameter or exit).

A flow version that uses blocks carries their text (:func:`pack`), so its content hash changes
when a block changes and a call keeps running on the blocks it started with, in every process.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import Field

from ivr.errors import Problem
from ivr.schema import BlockName, Model, Node, NodeName, RetrySpec, VarName
from ivr.yamlsource import Positions

PARAMS_VARIABLE = "_params"  # the session variable holding each entered block's parameters
PACKED_MARK = "#omnivoice: flow with blocks\n"
BLOCKS_DIRECTORY = "blocks"


class ParamSpec(Model):
    """One parameter of a block: required unless it has a ``default``."""

    description: str | None = Field(default=None, max_length=300)
    default: Any = None

    @property
    def required(self) -> bool:
        return "default" not in self.model_fields_set


class BlockSpec(Model):
    """A block file."""

    description: str | None = None
    params: dict[VarName, ParamSpec] = Field(default_factory=dict)
    exits: list[NodeName] = Field(min_length=1)
    start: NodeName
    nodes: dict[NodeName, Node] = Field(min_length=1)


@dataclass(frozen=True)
class Block:
    """A block file that loaded: its name (the file's stem), path, text and spec."""

    name: BlockName
    path: str
    text: str
    spec: BlockSpec


def used(nodes: Mapping[str, Node]) -> list[str]:
    """The names of the blocks ``nodes`` use, each once, sorted."""
    return sorted({node.use for node in nodes.values() if node.use})


def use_problems(
    nodes: Mapping[str, Node],
    blocks: Mapping[str, Block],
    positions: Positions,
    available: Iterable[str] = (),
) -> Iterator[Problem]:
    """What is wrong with the uses of blocks in a flow's ``nodes`` (located in the flow file);
    ``available`` names every block file there is, for suggestions."""
    names = sorted({*blocks, *available})
    for name, node in nodes.items():
        if not node.use:
            continue
        block = blocks.get(node.use)
        if block is None:
            hint = difflib.get_close_matches(node.use, names, n=1)
            suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
            known = f" (blocks: {', '.join(names)})" if names else ""
            yield positions.problem(
                ("nodes", name, "use"),
                f"There is no block named {node.use!r} in {BLOCKS_DIRECTORY}/{known}.{suggestion}",
            )
            continue
        given = node.with_ or {}
        for param in sorted(set(given) - set(block.spec.params)):
            yield positions.problem(
                ("nodes", name, "with", param),
                f"The block {node.use!r} has no parameter {param!r} "
                f"(it takes: {', '.join(sorted(block.spec.params)) or 'none'}).",
                at_key=True,
            )
        missing = [p for p, spec in block.spec.params.items() if spec.required and p not in given]
        if missing:
            yield positions.problem(
                ("nodes", name, "use"),
                f"The block {node.use!r} needs {', '.join(repr(p) for p in missing)} under with.",
            )
        exits = node.exits or {}
        for exit_name in sorted(set(exits) - set(block.spec.exits)):
            yield positions.problem(
                ("nodes", name, "exits", exit_name),
                f"The block {node.use!r} has no exit {exit_name!r} "
                f"(its exits: {', '.join(block.spec.exits)}).",
                at_key=True,
            )
        unmapped = [e for e in block.spec.exits if e not in exits]
        if unmapped:
            yield positions.problem(
                ("nodes", name, "use"),
                f"Say where the block {node.use!r} goes on to: add "
                + ", ".join(f"{e}: <node>" for e in unmapped)
                + " under exits.",
            )


def expand(nodes: Mapping[str, Node], blocks: Mapping[str, Block]) -> dict[str, Node]:
    """``nodes`` with every use of a block followed by the block's nodes (see the module's
    docstring); the use node keeps its ``use`` and ``with`` and goes to the block's start."""
    expanded: dict[str, Node] = {}
    for name, node in nodes.items():
        if not node.use:
            expanded[name] = node
            continue
        block = blocks[node.use]
        names = {inner: f"{name}.{inner}" for inner in block.spec.nodes}
        names.update(node.exits or {})
        defaults = {p: spec.default for p, spec in block.spec.params.items() if not spec.required}
        expanded[name] = node.model_copy(
            update={"goto": names[block.spec.start], "with_": {**defaults, **(node.with_ or {})}}
        )
        for inner, inner_node in block.spec.nodes.items():
            expanded[names[inner]] = _retarget(inner_node, names)
    return expanded


def instance(node_name: str) -> str | None:
    """The use node whose block ``node_name`` belongs to (``check_dob`` of ``check_dob.ask``)."""
    head, dot, _ = node_name.rpartition(".")
    return head if dot else None


def _retarget(node: Node, names: Mapping[str, str]) -> Node:
    """``node`` with every target renamed by ``names`` (block nodes, exits)."""

    def to(target: str | None) -> str | None:
        return names.get(target, target) if target is not None else None

    def retry(spec: RetrySpec | None) -> RetrySpec | None:
        return spec.model_copy(update={"then": to(spec.then)}) if spec and spec.then else spec

    changes: dict[str, Any] = {
        "next": to(node.next),
        "goto": to(node.goto),
        "on_error": to(node.on_error),
        "no_input": retry(node.no_input),
        "no_match": retry(node.no_match),
    }
    if node.on:
        changes["on"] = {key: to(target) for key, target in node.on.items()}
    if node.branch:
        changes["branch"] = [c.model_copy(update={"then": to(c.then)}) for c in node.branch]
    if node.transfer and node.transfer.on:
        outcomes = {key: to(target) for key, target in node.transfer.on.items()}
        changes["transfer"] = node.transfer.model_copy(update={"on": outcomes})
    if node.wait_for:
        changes["wait_for"] = node.wait_for.model_copy(
            update={
                "on_submit": to(node.wait_for.on_submit),
                "on_timeout": to(node.wait_for.on_timeout),
            }
        )
    return node.model_copy(update=changes)


def pack(flow_text: str, blocks: Mapping[str, Block]) -> str:
    """A flow's source with the text of the blocks it uses, so that the version is complete
    in itself (its hash, and what another process loads it from); unchanged without blocks."""
    if not blocks:
        return flow_text
    document = {
        "flow": flow_text,
        "blocks": {n: {"path": b.path, "text": b.text} for n, b in sorted(blocks.items())},
    }
    return PACKED_MARK + orjson.dumps(document).decode()


def unpack(source: str) -> tuple[str, dict[str, tuple[str, str]]] | None:
    """The flow text and the blocks' (path, text) of a :func:`pack`-ed source, else ``None``."""
    if not source.startswith(PACKED_MARK):
        return None
    document = orjson.loads(source[len(PACKED_MARK) :])
    found = {n: (b["path"], b["text"]) for n, b in document["blocks"].items()}
    return document["flow"], found
