"""The handoff bundle's JSON Schema (``docs/handoff-bundle.schema.json``) against real bundles.

Every bundle here is built by the real engine (``ivr.engine.start``/``step``) on small flows
written in the test, and checked both as the engine made it and as the event sinks get it
(masked by :func:`conversation.events.from_effects`). Broken copies show the schema can fail.
"""

from __future__ import annotations

import copy
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from conversation.events import from_effects
from ivr import engine, handoff, resume
from ivr.flow import Flow, load_flow_text
from ivr.states import EventName
from ivr.turn import Answer, AttachHandoff, Transfer, Turn

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "handoff-bundle.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
CALLER = "+14155550123"
CALL_SID = "CA" + "1" * 32
LATER_SID = "CA" + "2" * 32
PIN = "8642"

PIN_FLOW = """\
id: bank
sensitive: [pin]
start: pin
nodes:
  pin:
    description: PIN entry
    gather: {prompt: Enter your PIN., num_digits: 4}
    validate: {pattern: "^[0-9]{4}$"}
    save_as: pin
    next: agent
  agent:
    transfer:
      queue: support
      context: [pin]
      reason: "Caller keyed PIN {{ pin }}"
"""

RETRY_FLOW = """\
id: retries
start: menu
nodes:
  menu:
    description: main menu
    gather: {prompt: Press 1 for sales., num_digits: 1}
    on: {"1": sales}
    no_match: {retries: 2, then: agent}
  sales:
    say: Sales.
    hangup: true
  agent:
    transfer: {number: "+14155550100"}
"""

RESUME_FLOW = """\
id: rebook
resume: {within: 30m, ask: false}
start: booking
nodes:
  booking:
    checkpoint: true
    description: booking reference
    gather: {prompt: Say your booking reference.}
    save_as: reference
    next: confirm
  confirm:
    checkpoint: true
    gather: {prompt: "Press 1 to talk to someone about {{ reference }}."}
    on: {"1": agent}
  agent:
    transfer:
      client: agent_42
      context: [reference, missing.deep]
"""

CARD = {
    "v": 1,
    "name": "Ada Lovelace",
    "language": "en-GB",
    "time_zone": "Europe/London",
    "customer": 42,
    "contacts": [
        {
            "sid": "CA" + "3" * 32,
            "channel": "voice",
            "direction": "inbound",
            "at": 1_700_000_000.0,
            "ended_at": 1_700_000_090.0,
            "outcome": "transferred",
            "summary": "asked about a refund",
            "flow": "rebook",
            "node": "confirm",
            "topic": "refund",
        },
        {
            "sid": "SM" + "4" * 32,
            "channel": "sms",
            "direction": "outbound",
            "at": 1_699_000_000.0,
            "ended_at": None,
            "outcome": None,
            "summary": None,
            "flow": None,
            "node": None,
            "topic": None,
        },
    ],
    "notes": [
        {
            "at": 1_700_000_100.0,
            "agent": "grace",
            "text": "Refund promised within 5 days.",
            "disposition": "follow_up",
            "call_sid": "CA" + "3" * 32,
        }
    ],
    "open_conversation": {"topic": "refund", "status": "active", "last_step": "confirm"},
}


def flow_of(text: str) -> Flow:
    return load_flow_text(textwrap.dedent(text), "test.yaml", "test")


def begin(flow: Flow, **kwargs: Any) -> Turn:
    return engine.start(flow, caller=CALLER, call_sid=CALL_SID, at=1_700_000_200.0, **kwargs)


def answer(flow: Flow, turn: Turn, digits: str | None = None, speech: str | None = None) -> Turn:
    at = turn.session.updated_at + 7.0
    return engine.step(flow, turn.session, Answer(digits, speech, None, at=at))


def bundles_of(flow: Flow, turn: Turn) -> list[dict[str, Any]]:
    """The turn's bundle as the engine built it and as the event sinks receive it."""
    [transfer] = [action for action in turn.actions if isinstance(action, Transfer)]
    [attached] = [effect for effect in turn.effects if isinstance(effect, AttachHandoff)]
    assert attached.bundle == transfer.bundle
    events = from_effects(turn.effects, turn.session, flow, turn.session.updated_at)
    [event] = [event for event in events if event.name == EventName.HANDOFF]
    # Through JSON, as the store, the API and the webhook carry it.
    return [json.loads(json.dumps(b)) for b in (transfer.bundle, event.data["bundle"])]


def errors_of(bundle: Any) -> list[str]:
    return [error.message for error in VALIDATOR.iter_errors(bundle)]


def pin_bundle() -> dict[str, Any]:
    flow = flow_of(PIN_FLOW)
    return bundles_of(flow, answer(flow, begin(flow), PIN))[0]


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["$id"] and SCHEMA["title"]


def test_the_schema_and_the_engine_agree_on_the_version() -> None:
    assert SCHEMA["properties"]["v"] == {**SCHEMA["properties"]["v"], "const": 1}
    assert SCHEMA["properties"]["v"]["const"] == handoff.BUNDLE_VERSION
    assert f"/v{handoff.BUNDLE_VERSION}." in SCHEMA["$id"]


def test_every_top_level_field_is_described_and_required() -> None:
    properties = SCHEMA["properties"]
    assert set(SCHEMA["required"]) == set(properties)
    assert [name for name, spec in properties.items() if not spec.get("description")] == []


def test_a_sensitive_flow_s_bundle_validates_and_masks_the_pin() -> None:
    flow = flow_of(PIN_FLOW)
    turn = answer(flow, begin(flow), PIN)
    for bundle in bundles_of(flow, turn):
        assert errors_of(bundle) == []
        assert PIN not in json.dumps(bundle)
        assert bundle["inputs"] == {"pin": "***"}
        assert bundle["context"] == {"pin": "***"}
        assert bundle["route"] == {"kind": "queue", "target": "support"}


def test_a_transfer_after_retries_validates_and_counts_the_tries() -> None:
    flow = flow_of(RETRY_FLOW)
    turn = begin(flow)
    for wrong in ("7", "8", "9"):
        turn = answer(flow, turn, wrong)
    for bundle in bundles_of(flow, turn):
        assert errors_of(bundle) == []
        assert bundle["attempts"] == {"menu": {"no_match": 3, "inputs": ["7", "8", "9"]}}
        assert bundle["route"] == {"kind": "number", "target": "+14155550100"}
        assert "after 3 tries" in bundle["reason"]
        assert bundle["ivr_seconds"] == 21.0


def test_a_resumed_caller_with_a_card_validates_with_contacts_and_notes() -> None:
    flow = flow_of(RESUME_FLOW)
    first = answer(flow, begin(flow, card=CARD), speech="ABC123")
    dropped = first.session.call_ended("completed", first.session.updated_at + 5)
    again = resume.carried_over(flow, dropped, LATER_SID, dropped.updated_at + 60, attested=True)
    again = again.evolve(resumes=1, identified=("caller_id", "stir_a"), card=CARD)
    restored = resume.restore(flow, again, at=again.updated_at)
    turn = answer(flow, restored, "1")
    for bundle in bundles_of(flow, turn):
        assert errors_of(bundle) == []
        assert bundle["call_sid"] == LATER_SID
        assert bundle["resumes"] == 1
        assert bundle["caller"]["confidence"] == "high"
        assert bundle["caller"]["name"] == "Ada Lovelace"
        assert bundle["topic"] == "refund"
        assert [c["sid"] for c in bundle["recent_contacts"]] == [c["sid"] for c in CARD["contacts"]]
        assert bundle["notes"][0]["text"] == "Refund promised within 5 days."
        assert bundle["context"] == {"reference": "ABC123", "missing.deep": None}
        assert bundle["route"] == {"kind": "client", "target": "agent_42"}


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        ("queue: support", "queue"),
        ("number: '+14155550100'", "number"),
        ("client: agent_42", "client"),
        ("sip: 'sip:agent@pbx.example.com'", "sip"),
    ],
)
def test_every_route_kind_validates(target: str, kind: str) -> None:
    flow = flow_of(f"start: a\nnodes:\n  a:\n    transfer: {{{target}}}\n")
    turn = begin(flow)
    for bundle in bundles_of(flow, turn):
        assert errors_of(bundle) == []
        assert bundle["route"]["kind"] == kind


def test_a_caller_handed_over_twice_lists_the_first_handoff() -> None:
    flow = flow_of(RETRY_FLOW)
    turn = begin(flow)
    for wrong in ("7", "8", "9"):
        turn = answer(flow, turn, wrong)
    first_id = turn.session.handoffs[-1]
    dropped = turn.session.call_ended("completed", turn.session.updated_at + 5)
    again = engine.start(
        flow, caller=CALLER, call_sid=LATER_SID, at=dropped.updated_at + 60, session=dropped,
        node="agent",
    )  # fmt: skip
    [bundle, _] = bundles_of(flow, again)
    assert errors_of(bundle) == []
    assert bundle["previous"] == [first_id]


# ---- the schema can fail ----------------------------------------------------------------
def broken(change: str) -> dict[str, Any]:
    bundle = copy.deepcopy(pin_bundle())
    if change == "wrong version":
        bundle["v"] = 2
    elif change == "missing key":
        del bundle["caller"]
    elif change == "typo at the top":
        bundle["sumary"] = bundle.pop("summary")
    elif change == "extra top-level field":
        bundle["debug"] = True
    elif change == "number as text":
        bundle["ivr_seconds"] = "12"
    elif change == "bad route kind":
        bundle["route"]["kind"] = "email"
    elif change == "bad confidence":
        bundle["caller"]["confidence"] = "sure"
    elif change == "bad handoff id":
        bundle["id"] = "HO123"
    elif change == "unknown identification":
        bundle["caller"]["identified_by"] = ["guessed"]
    elif change == "attempts not counted":
        bundle["attempts"] = {"pin": {"no_match": "two"}}
    elif change == "failed inputs not text":
        bundle["attempts"] = {"pin": {"no_match": 1, "inputs": [1234]}}
    elif change == "too many failed inputs":
        bundle["attempts"] = {"pin": {"no_match": 6, "inputs": ["***"] * 6}}
    elif change == "path entry without node":
        bundle["path"][0].pop("node")
    return bundle


@pytest.mark.parametrize(
    "change",
    [
        "wrong version",
        "missing key",
        "typo at the top",
        "extra top-level field",
        "number as text",
        "bad route kind",
        "bad confidence",
        "bad handoff id",
        "unknown identification",
        "attempts not counted",
        "failed inputs not text",
        "too many failed inputs",
        "path entry without node",
    ],
)
def test_a_broken_bundle_fails_validation(change: str) -> None:
    with pytest.raises(ValidationError):
        VALIDATOR.validate(broken(change))


def test_inputs_and_context_stay_open_to_the_flow_s_own_names() -> None:
    bundle = copy.deepcopy(pin_bundle())
    bundle["inputs"]["anything_at_all"] = "1"
    bundle["context"]["booking.flight"] = {"nested": [1, 2]}
    assert errors_of(bundle) == []
