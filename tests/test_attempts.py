"""Attempt data in the engine: ``attempts.<node>`` in templates, failed inputs, ``max_attempts``
and ``reprompt_mode``, on flows loaded from YAML text (no server)."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from ivr import attempts, engine
from ivr.errors import FlowLoadError
from ivr.flow import Flow, load_flow_text
from ivr.schema import flow_json_schema
from ivr.turn import Answer, AttachHandoff, Gather, Say, Transfer, Turn

CALLER = "+14155550123"

MENU = """\
start: menu
sensitive: [pin]
nodes:
  menu:
    gather:
      prompt: Press 1 for sales.
      input: [dtmf, speech]
      {gather}
    on: {{"1|sales": sales}}
    no_input: {{retries: 3, then: agent}}
    no_match:
      retries: 3
      reprompt: "Try {{{{ attempts.menu.no_match }}}} of 3: {{{{ attempts.menu.inputs | join(', ') }}}}."
      then: agent
  sales:
    branch:
      - {{if: "attempts.menu.no_match > 1", then: patient}}
    next: quick
  quick:
    say: Quick.
    hangup: true
  patient:
    say: "Thanks for your patience after {{{{ attempts.menu.no_match }}}} tries."
    hangup: true
  pin:
    gather: {{prompt: Enter your PIN., num_digits: 4}}
    validate: {{pattern: "^[0-9]{{4}}$"}}
    save_as: pin
    no_match: {{retries: 9, then: agent}}
    next: agent
  agent:
    transfer: {{queue: support}}
"""


def flow_of(gather: str = "") -> Flow:
    text = MENU.format(gather=gather)
    return load_flow_text(textwrap.dedent(text), "test.yaml", "test")


def begin(flow: Flow, node: str | None = None) -> Turn:
    return engine.start(flow, caller=CALLER, call_sid="CA1", at=100.0, node=node)


def reply(
    flow: Flow, turn: Turn, digits: str | None = None, speech: str | None = None, conf: float = 0.9
) -> Turn:
    return engine.step(flow, turn.session, Answer(digits, speech, conf if speech else None, 200.0))


def heard(turn: Turn) -> list[str]:
    said = []
    for action in turn.actions:
        parts = action.prompt if isinstance(action, Gather) else (action,)
        said += [part.text for part in parts if isinstance(part, Say)]
    return said


def gather_of(turn: Turn) -> Gather:
    last = turn.actions[-1]
    assert isinstance(last, Gather), turn.actions
    return last


def bundle_of(turn: Turn) -> dict[str, Any]:
    [attached] = [e for e in turn.effects if isinstance(e, AttachHandoff)]
    return dict(attached.bundle)


# ---- counts and inputs ---------------------------------------------------------------------
def test_failed_answers_are_counted_and_kept_as_heard() -> None:
    flow = flow_of()
    turn = reply(flow, begin(flow), "7")
    turn = reply(flow, turn, speech="billing please")
    turn = reply(flow, turn)
    assert turn.session.attempts == {
        "menu": {"no_match": 2, "no_input": 1, "inputs": ["7", "billing please"]}
    }
    assert attempts.of(turn.session.attempts, "menu")["inputs"] == ["7", "billing please"]


def test_templates_read_the_counts_and_inputs_of_this_node() -> None:
    flow = flow_of()
    turn = reply(flow, begin(flow), "7")
    assert heard(turn)[0] == "Try 1 of 3: 7."
    turn = reply(flow, turn, "8")
    assert heard(turn)[0] == "Try 2 of 3: 7, 8."


@pytest.mark.parametrize(
    ("wrong", "said"), [(1, "Quick."), (2, "Thanks for your patience after 2 tries.")]
)
def test_conditions_see_the_tries_a_node_took(wrong: int, said: str) -> None:
    flow = flow_of()
    turn = begin(flow)
    for _ in range(wrong):
        turn = reply(flow, turn, "9")
    turn = reply(flow, turn, "1")
    assert heard(turn) == [said]


def test_a_node_not_tried_yet_reads_as_zero_and_an_unknown_node_as_nothing() -> None:
    flow = flow_of()
    scope = attempts.Tries(flow.spec.nodes, {})
    assert scope["pin"] == {"no_input": 0, "no_match": 0, "inputs": []}
    with pytest.raises(KeyError):
        scope["nowhere"]
    turn = reply(flow, begin(flow), "1")  # no try at menu: the quick path
    assert heard(turn) == ["Quick."]


def test_inputs_are_capped_in_count_and_length() -> None:
    flow = flow_of()
    turn = begin(flow)
    said = ["x" * 100, *(f"wrong {n}" for n in range(2, 4))]
    for speech in said:
        turn = reply(flow, turn, speech=speech)
    found = attempts.counted(turn.session.attempts, "menu", "no_match", "y" * 100)
    for n in range(10):
        found = attempts.counted(found, "menu", "no_match", f"again {n}")
    inputs = found["menu"]["inputs"]
    assert len(inputs) == attempts.MAX_INPUTS
    assert inputs[-1] == "again 9"
    assert max(len(x) for x in turn.session.attempts["menu"]["inputs"]) == attempts.MAX_INPUT_CHARS


def test_a_node_saving_a_sensitive_variable_keeps_its_inputs_masked() -> None:
    flow = flow_of()
    turn = begin(flow, node="pin")
    turn = reply(flow, turn, "12")
    turn = reply(flow, turn, "98765")
    assert turn.session.attempts["pin"]["inputs"] == ["***", "***"]
    assert "98765" not in json.dumps(turn.session.to_dict())


def test_the_handoff_bundle_carries_the_inputs_and_validates() -> None:
    from tests.test_handoff_schema import VALIDATOR

    flow = flow_of("max_attempts: 3")
    turn = begin(flow)
    for wrong in ("7", "8", "no idea"):
        turn = reply(flow, turn, *((None, wrong) if " " in wrong else (wrong,)))
    assert isinstance(turn.actions[-1], Transfer)
    bundle = bundle_of(turn)
    assert bundle["attempts"] == {"menu": {"no_match": 3, "inputs": ["7", "8", "no idea"]}}
    assert list(VALIDATOR.iter_errors(bundle)) == []
    pin_flow = flow_of()
    turn = begin(pin_flow, node="pin")
    for _ in range(10):
        turn = reply(pin_flow, turn, "1")
    bundle = bundle_of(turn)
    assert bundle["attempts"]["pin"]["inputs"] == ["***"] * attempts.MAX_INPUTS
    assert list(VALIDATOR.iter_errors(bundle)) == []


def test_a_node_without_failed_inputs_has_no_inputs_in_the_bundle() -> None:
    flow = flow_of()
    turn = begin(flow)
    for _ in range(4):
        turn = reply(flow, turn)
    assert bundle_of(turn)["attempts"] == {"menu": {"no_input": 4}}


# ---- max_attempts ---------------------------------------------------------------------------
def test_max_attempts_counts_both_kinds_together() -> None:
    flow = flow_of("max_attempts: 3")
    turn = reply(flow, begin(flow))
    turn = reply(flow, turn, "9")
    assert isinstance(turn.actions[-1], Gather)
    turn = reply(flow, turn)
    assert isinstance(turn.actions[-1], Transfer)
    assert turn.session.node == "agent"
    assert bundle_of(turn)["reason"] == "no answer at menu after 3 tries in all"


def test_without_max_attempts_each_kind_has_its_own_retries() -> None:
    flow = flow_of()
    turn = begin(flow)
    for answer in (None, "9", None, "9", None, "9"):
        turn = reply(flow, turn, answer)
    assert isinstance(turn.actions[-1], Gather)
    assert (turn.session.no_input_count, turn.session.no_match_count) == (3, 3)


def test_retries_still_end_a_kind_before_max_attempts() -> None:
    flow = flow_of("max_attempts: 10")
    turn = begin(flow)
    for _ in range(4):
        turn = reply(flow, turn, "9")
    assert isinstance(turn.actions[-1], Transfer)
    assert bundle_of(turn)["reason"] == "no usable answer at menu after 4 tries"


# ---- reprompt_mode --------------------------------------------------------------------------
def test_a_reprompt_comes_before_the_question_by_default() -> None:
    flow = flow_of()
    assert heard(reply(flow, begin(flow), "7")) == ["Try 1 of 3: 7.", "Press 1 for sales."]


def test_reprompt_mode_replace_asks_with_the_reprompt_alone() -> None:
    flow = flow_of("reprompt_mode: replace")
    turn = reply(flow, begin(flow), "7")
    assert heard(turn) == ["Try 1 of 3: 7."]
    assert gather_of(turn).input == ("dtmf", "speech")


def test_reprompt_mode_replace_without_a_written_reprompt_keeps_the_question() -> None:
    flow = flow_of("reprompt_mode: replace")
    turn = reply(flow, begin(flow))  # no_input has no reprompt of its own
    assert heard(turn) == [engine.NO_INPUT_TEXT, "Press 1 for sales."]


# ---- bad input and the JSON Schema ----------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("reprompt_mode: after", "Input should be 'before' or 'replace'"),
        ("max_attempts: 0", "greater than or equal to 1"),
        ("max_attempts: 21", "less than or equal to 20"),
    ],
)
def test_bad_settings_are_refused_at_their_line_and_column(line: str, fragment: str) -> None:
    with pytest.raises(FlowLoadError) as caught:
        flow_of(line)
    [problem] = caught.value.problems
    assert (problem.path, problem.line, problem.col) == (
        "test.yaml",
        8,
        21 if "max" in line else 22,
    )
    assert fragment in problem.message


def test_the_json_schema_offers_both_settings() -> None:
    schema = flow_json_schema()
    gather = schema["$defs"]["GatherSpec"]["properties"]
    assert gather["reprompt_mode"]["enum"] == ["before", "replace"]
    assert gather["reprompt_mode"]["default"] == "before"
    validator = Draft202012Validator(schema)
    flow: dict[str, Any] = {
        "start": "menu",
        "nodes": {
            "menu": {"gather": {"max_attempts": 3, "reprompt_mode": "replace"}, "next": "menu"}
        },
    }
    assert list(validator.iter_errors(flow)) == []
    flow["nodes"]["menu"]["gather"]["reprompt_mode"] = "after"
    assert list(validator.iter_errors(flow)) != []
    flow["nodes"]["menu"]["gather"] = {"max_attempts": 0}
    assert list(validator.iter_errors(flow)) != []
