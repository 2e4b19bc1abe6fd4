"""Reusable blocks: a date-of-birth check written once in ``blocks/`` and used from two places
of one flow and from two flows, with parameters and named exits; the problems of a use (in the
flow's file) and of a block (in the block's file); versions that carry their blocks."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from flask import Flask
from jsonschema import Draft202012Validator

from ivr import blocks, engine
from ivr.catalog import Catalog
from ivr.errors import FlowLoadError
from ivr.flow import load_flow_file, load_flow_text
from ivr.schema import block_json_schema, flow_json_schema
from ivr.turn import Answer, Say, Turn
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN

BLOCK = """\
description: Ask for the caller's date of birth and check it.
params:
  expected: {description: "the date of birth on file, as eight digits"}
  what: {default: your date of birth}
exits: [verified, failed]
start: ask
nodes:
  ask:
    gather: {prompt: "Please key in {{ params.what }} as eight digits.", num_digits: 8}
    save_as: dob
    no_input: {retries: 1, then: failed}
    no_match: {retries: 1, then: failed}
    next: check
  check:
    branch:
      - {if: "dob == params.expected", then: verified}
    next: mismatch
  mismatch:
    say: That does not match.
    next: failed
"""

PAYMENTS = """\
id: payments
numbers: ["+14155550100"]
start: hello
nodes:
  hello:
    set: {account: {dob: "19800101"}, partner_dob: "19790202"}
    next: check_dob
  check_dob:
    use: verify_dob
    with: {expected: "{{ account.dob }}"}
    exits: {verified: partner, failed: agent}
  partner:
    say: Thanks. Now your partner's.
    next: check_partner
  check_partner:
    use: verify_dob
    with: {expected: "{{ partner_dob }}", what: "your partner's date of birth"}
    exits: {verified: done, failed: agent}
  done:
    say: "Both checked: {{ dob }}."
    hangup: true
  agent:
    say: Let me get someone to help.
    hangup: true
"""

CLAIMS = """\
id: claims
numbers: ["+14155550111"]
start: check
nodes:
  check:
    use: verify_dob
    with: {expected: "20000303"}
    exits: {verified: open, failed: closed}
  open:
    say: Your claim is open.
    hangup: true
  closed:
    say: Sorry, I could not check that.
    hangup: true
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write(tmp_path, "blocks/verify_dob.yaml", BLOCK)
    write(tmp_path, "payments.yaml", PAYMENTS)
    write(tmp_path, "claims.yaml", CLAIMS)
    return tmp_path


def said(turn: Turn) -> list[str]:
    return [a.text for a in turn.actions if isinstance(a, Say)]


def prompts(turn: Turn) -> list[str]:
    return [p.text for a in turn.actions for p in getattr(a, "prompt", ()) if isinstance(p, Say)]


def test_a_block_runs_with_its_parameters_and_its_exits_lead_where_each_use_says(
    folder: Path,
) -> None:
    flow = load_flow_file(folder / "payments.yaml")
    turn = engine.start(flow, caller="+14155550123", call_sid="CA1", at=1.0)
    assert turn.session.node == "check_dob.ask"
    assert prompts(turn) == ["Please key in your date of birth as eight digits."]
    turn = engine.step(flow, turn.session, Answer(digits="19800101", at=2.0))
    assert said(turn) == ["Thanks. Now your partner's."]
    assert prompts(turn) == ["Please key in your partner's date of birth as eight digits."]
    assert turn.session.node == "check_partner.ask"
    wrong = engine.step(flow, turn.session, Answer(digits="11111111", at=3.0))
    assert said(wrong) == ["That does not match.", "Let me get someone to help."]
    right = engine.step(flow, turn.session, Answer(digits="19790202", at=3.0))
    assert said(right) == ["Both checked: 19790202."]


def test_the_same_block_serves_another_flow(folder: Path) -> None:
    flow = load_flow_file(folder / "claims.yaml")
    turn = engine.start(flow, caller="+14155550123", call_sid="CA1", at=1.0)
    assert said(engine.step(flow, turn.session, Answer(digits="20000303", at=2.0))) == [
        "Your claim is open."
    ]
    silent = engine.step(flow, turn.session, Answer(at=2.0))
    assert "Please key in your date of birth" in " ".join(prompts(silent))  # the block's retry
    gave_up = engine.step(flow, silent.session, Answer(at=3.0))
    assert said(gave_up) == ["Sorry, I could not check that."]  # no_input's then: the exit


def test_a_call_through_the_webhooks_runs_the_block(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    (flows_dir / "airline.yaml").unlink()
    write(flows_dir, "blocks/verify_dob.yaml", BLOCK)
    write(flows_dir, "payments.yaml", PAYMENTS)
    app = make_app()
    call = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    call.press("19800101").press("19790202")
    assert call.last_heard == "Both checked: 19790202."


def test_a_version_carries_its_blocks_and_loads_from_itself(folder: Path) -> None:
    flow = load_flow_file(folder / "payments.yaml")
    assert flow.source.startswith(blocks.PACKED_MARK)
    again = load_flow_text(flow.source, "payments@stored", "payments", blocks_from={})
    assert again.version == flow.version
    assert again.spec.nodes.keys() == flow.spec.nodes.keys()
    write(folder, "blocks/verify_dob.yaml", BLOCK.replace("That does not", "That doesn't"))
    changed = load_flow_file(folder / "payments.yaml")
    assert changed.version != flow.version


def test_a_flow_without_blocks_keeps_its_plain_source_and_version(folder: Path) -> None:
    text = "start: a\nnodes:\n  a: {say: Hi., hangup: true}\n"
    flow = load_flow_text(text, "x.yaml", "x", blocks_from={})
    assert flow.source == text


def test_the_catalog_reloads_flows_when_a_block_changes(folder: Path) -> None:
    catalog = Catalog(folder)
    assert catalog.refresh() == []
    before = catalog.get("payments")
    assert before is not None
    write(folder, "blocks/verify_dob.yaml", BLOCK.replace("That does not", "That doesn't"))
    assert catalog.refresh() == []
    after = catalog.get("payments")
    assert after is not None and after.version != before.version
    assert catalog.version(before.version) is before  # calls on it finish on it


def test_a_broken_block_is_reported_in_its_own_file_and_the_last_good_flow_serves(
    folder: Path,
) -> None:
    catalog = Catalog(folder)
    catalog.refresh()
    good = catalog.get("claims")
    broken = BLOCK.replace("then: verified}", "then: verifed}")
    write(folder, "blocks/verify_dob.yaml", broken)
    problems = catalog.refresh()
    texts = [str(p) for p in problems]
    block_file = str(folder / "blocks" / "verify_dob.yaml")
    assert any(
        t.startswith(f"{block_file}:") and "no node named 'verifed'" in t and "'verified'" in t
        for t in texts
    ), texts
    assert any("claims.yaml" in t and "has problems" in t for t in texts)
    assert catalog.get("claims") is good


def flow_problems(folder: Path, text: str) -> str:
    write(folder, "claims.yaml", text)
    with pytest.raises(FlowLoadError) as failed:
        load_flow_file(folder / "claims.yaml")
    return str(failed.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("use: verify_dob", "use: verify_dbo"),
            "There is no block named 'verify_dbo' in blocks/ (blocks: verify_dob). Did you mean 'verify_dob'?",
        ),
        (
            ('with: {expected: "20000303"}', 'with: {expcted: "20000303"}'),
            "The block 'verify_dob' has no parameter 'expcted'",
        ),
        (
            ('with: {expected: "20000303"}', "with: {what: it}"),
            "The block 'verify_dob' needs 'expected' under with.",
        ),
        (
            ("exits: {verified: open, failed: closed}", "exits: {verified: open}"),
            "add failed: <node> under exits",
        ),
        (
            ("failed: closed}", "failed: closed, lost: open}"),
            "The block 'verify_dob' has no exit 'lost'",
        ),
        (("failed: closed}", "failed: clsoed}"), "There is no node named 'clsoed'"),
        (
            ("    exits: {verified", "    say: hello\n    exits: {verified"),
            "a node that uses a block does only that",
        ),
    ],
)
def test_a_use_s_problems_point_into_the_flow_file(
    folder: Path, change: tuple[str, str], expected: str
) -> None:
    found = flow_problems(folder, textwrap.dedent(CLAIMS).replace(*change))
    assert expected in found
    assert "claims.yaml:" in found


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("  mismatch:\n", "  inner:\n    use: other\n    exits: {x: failed}\n  mismatch:\n"),
            "A block cannot use another block",
        ),
        (
            ("exits: [verified, failed]", "exits: [verified, failed, check]"),
            "'check' is both an exit and a node",
        ),
        (("exits: [verified, failed]", "exits: []"), "exits"),
        (("{{ params.what }}", "{{ params.what"), "syntax error"),
    ],
)
def test_a_block_s_own_problems_point_into_the_block_file(
    folder: Path, change: tuple[str, str], expected: str
) -> None:
    write(folder, "blocks/verify_dob.yaml", BLOCK.replace(*change))
    found = flow_problems(folder, textwrap.dedent(CLAIMS))
    assert expected in found
    assert str(folder / "blocks" / "verify_dob.yaml") + ":" in found


def test_with_and_exits_need_a_use(folder: Path) -> None:
    text = "start: a\nnodes:\n  a: {say: Hi., exits: {x: a}}\n"
    with pytest.raises(FlowLoadError) as failed:
        load_flow_text(text, "x.yaml", "x", blocks_from={})
    assert "with and exits belong to a node that uses a block" in str(failed.value)


def test_flows_validate_checks_blocks_no_flow_uses_yet(folder: Path) -> None:
    write(
        folder, "blocks/spare.yaml", "exits: [done]\nstart: a\nnodes:\n  a: {say: Hi., next: dne}\n"
    )
    problems = [str(p) for p in Catalog(folder).refresh()]
    assert any("spare.yaml:4:" in p and "no node named 'dne'" in p for p in problems), problems


def test_the_block_schema_accepts_a_block_and_refuses_a_typo() -> None:
    validator = Draft202012Validator(block_json_schema())
    assert not list(validator.iter_errors(yaml.safe_load(BLOCK)))
    assert list(validator.iter_errors(yaml.safe_load(BLOCK.replace("exits:", "exit:"))))
    flows = Draft202012Validator(flow_json_schema())
    assert not list(flows.iter_errors(yaml.safe_load(PAYMENTS)))
