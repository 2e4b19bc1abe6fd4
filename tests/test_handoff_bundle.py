"""The handoff bundle and the end of a transfer, in the pure engine: no server needed."""

from __future__ import annotations

import json
import textwrap

import pytest

from ivr import engine, handoff
from ivr.flow import Flow, load_flow_text
from ivr.session import Session
from ivr.states import EventName, Status, TransferResult
from ivr.turn import Answer, AttachHandoff, Hangup, RequestCallback, Say, Transfer, Turn

CALLER = "+14155550123"
FLOW = """\
    sensitive: [dob]
    fallback: agent
    start: menu
    nodes:
      menu:
        description: at the menu for {{ dob or 'a new caller' }}
        gather: {prompt: Key your date of birth., num_digits: 8}
        save_as: dob
        validate: {pattern: "^[0-9]{8}$"}
        next: check
        no_match: {retries: 1, then: agent}
      check:
        verified: true
        gather: {prompt: Press 1 for an agent., num_digits: 1}
        on: {"1": agent}
      agent:
        transfer:
          queue: support
          context: [dob]
          on: {queue_full: callback}
      callback:
        callback: {reason: "queue full for {{ dob }}"}
        say: We will call you back.
        hangup: true
"""


def flow_of(text: str = FLOW) -> Flow:
    return load_flow_text(textwrap.dedent(text), "test.yaml", "test")


def begin(flow: Flow, **kwargs: object) -> Turn:
    return engine.start(flow, caller=CALLER, call_sid="CA1", at=100.0, **kwargs)  # type: ignore[arg-type]


def press(flow: Flow, turn: Turn, digits: str, at: float = 130.0) -> Turn:
    return engine.step(flow, turn.session, Answer(digits=digits, at=at))


def bundle_of(turn: Turn) -> dict:
    [attach] = [e for e in turn.effects if isinstance(e, AttachHandoff)]
    return dict(attach.bundle)


def test_the_bundle_knows_the_path_inputs_identity_and_time() -> None:
    flow = flow_of()
    turn = press(flow, press(flow, begin(flow, identified=("caller_id",)), "19800101"), "1", 190)
    bundle = bundle_of(turn)
    assert bundle["v"] == handoff.BUNDLE_VERSION
    assert bundle["id"] == handoff.handoff_id("CA1", turn.session.step, "agent")
    assert [p["node"] for p in bundle["path"]] == ["menu", "check", "agent"]
    assert bundle["path"][0]["answer"] == "***"
    assert bundle["inputs"] == {"dob": "***"} and bundle["context"] == {"dob": "***"}
    assert bundle["caller"]["identified_by"] == ["caller_id", "verified"]
    assert bundle["caller"]["confidence"] == "high"
    assert bundle["ivr_seconds"] == 90.0
    assert bundle["reason"] == "asked for a person at agent"  # no description to say it better
    assert "19800101" not in json.dumps(bundle)  # not even in a rendered label
    assert bundle["path"][0]["label"] == "at the menu for ***"
    [transfer] = [a for a in turn.actions if isinstance(a, Transfer)]
    assert (transfer.route, transfer.target, transfer.handoff_id) == (
        "queue",
        "support",
        bundle["id"],
    )
    assert turn.session.handoffs == (bundle["id"],)
    assert turn.session.status == Status.TRANSFERRED


def test_failed_attempts_are_counted_and_become_the_reason() -> None:
    flow = flow_of()
    turn = begin(flow)
    turn = press(flow, turn, "12")  # no match (too short)
    turn = press(flow, turn, "34")  # no match again: retries used up, to the agent
    bundle = bundle_of(turn)
    # dob is sensitive: the failed answers are masked too
    assert bundle["attempts"] == {"menu": {"no_match": 2, "inputs": ["***", "***"]}}
    assert bundle["reason"] == "no usable answer at menu after 2 tries"
    assert bundle["caller"]["confidence"] == "unknown"


def test_a_retried_webhook_makes_the_same_handoff() -> None:
    flow = flow_of()
    first = press(flow, begin(flow), "12")
    a = bundle_of(press(flow, first, "34"))
    b = bundle_of(press(flow, first, "34"))
    assert a["id"] == b["id"]


def test_a_full_queue_goes_to_its_node_and_records_a_callback() -> None:
    flow = flow_of()
    transferred = press(flow, press(flow, begin(flow), "12"), "34")
    turn = engine.after_transfer(flow, transferred.session, TransferResult.QUEUE_FULL, 200.0)
    assert [type(a) for a in turn.actions] == [Say, Hangup]
    [callback] = [e for e in turn.effects if isinstance(e, RequestCallback)]
    assert callback.number == CALLER
    assert callback.handoff_id == transferred.session.handoffs[-1]
    assert callback.reason == "queue full for"  # dob was never given
    notes = [e for e in turn.effects if getattr(e, "name", None) == EventName.TRANSFER_RESULT]
    assert notes[0].data["next"] == "callback"
    assert turn.session.step == transferred.session.step + 1


@pytest.mark.parametrize(
    "result", [TransferResult.CONNECTED, TransferResult.ABANDONED, TransferResult.REDIRECTED]
)
def test_a_transfer_that_reached_someone_leaves_the_flow_done(result: TransferResult) -> None:
    flow = flow_of()
    transferred = press(flow, press(flow, begin(flow), "12"), "34")
    turn = engine.after_transfer(flow, transferred.session, result, 200.0)
    assert turn.session.status == Status.TRANSFERRED
    hangs_up = [type(a) for a in turn.actions] == [Hangup]
    assert hangs_up == (result == TransferResult.CONNECTED)


def test_no_node_for_it_and_a_fallback_that_transfers_is_a_goodbye_not_a_loop() -> None:
    flow = flow_of()
    transferred = press(flow, press(flow, begin(flow), "12"), "34")
    turn = engine.after_transfer(flow, transferred.session, TransferResult.FAILED, 200.0)
    assert [type(a) for a in turn.actions] == [Say, Hangup]
    assert turn.actions[0].text == engine.NOBODY_TEXT  # type: ignore[union-attr]
    assert turn.session.status == Status.COMPLETED


def test_a_repeat_caller_bundle_names_the_previous_handoff_and_the_card_notes() -> None:
    flow = flow_of()
    card = {
        "name": "Ana Ruiz",
        "customer": 7,
        "contacts": [{"sid": "CA0", "channel": "voice", "outcome": "transferred", "at": 1.0}],
        "notes": [{"agent": "bob", "text": "Refund promised", "disposition": "follow_up"}],
    }
    earlier = Session(
        caller=CALLER, flow_id=flow.id, flow_version=flow.version, call_sid="CA0",
        handoffs=("HO" + "1" * 32,), resumes=1, identified=("caller_id",),
    )  # fmt: skip
    turn = engine.start(
        flow, caller=CALLER, call_sid="CA2", at=300.0, node="agent",
        session=earlier.evolve(card=card),
    )  # fmt: skip
    bundle = bundle_of(turn)
    assert bundle["previous"] == ["HO" + "1" * 32]
    assert bundle["caller"]["name"] == "Ana Ruiz" and bundle["caller"]["customer"] == 7
    assert bundle["notes"][0]["text"] == "Refund promised"
    assert bundle["recent_contacts"][0]["sid"] == "CA0"
    assert bundle["summary"].startswith("Ana Ruiz, identified by caller ID, calling back:")


def test_a_shared_number_is_never_a_sure_identity() -> None:
    assert handoff.confidence(("stir_a",), {"shared": ["+14155550123"]}) == "low"
    assert handoff.confidence(("stir_a",), {}) == "high"
    assert handoff.confidence(("resume_code",), {}) == "medium"
    assert handoff.confidence((), {}) == "unknown"


def test_a_callback_reason_never_carries_a_sensitive_value() -> None:
    flow = flow_of()
    given = press(flow, begin(flow), "19800101")
    queued = press(flow, given, "1")
    turn = engine.after_transfer(flow, queued.session, TransferResult.QUEUE_FULL, 200.0)
    [callback] = [e for e in turn.effects if isinstance(e, RequestCallback)]
    assert callback.reason == "queue full for ***"


def test_secrets_are_scrubbed_from_any_text() -> None:
    scrubbed = handoff.scrub({"a": ["PIN 4321 given", 4321, "x"]}, {"4321"}, numbers=True)
    assert scrubbed == {"a": ["PIN *** given", "***", "x"]}
    assert handoff.scrub({"resumes": 1}, {"1"}) == {"resumes": 1}


def test_a_one_digit_secret_never_masks_the_bundles_own_counts() -> None:
    flow = flow_of(FLOW.replace("num_digits: 8", "num_digits: 1").replace("{8}", "{1}"))
    earlier = Session(
        caller=CALLER, flow_id=flow.id, flow_version=flow.version, call_sid="CA0",
        resumes=1, variables={"dob": "1"},
    )  # fmt: skip
    turn = engine.start(
        flow, caller=CALLER, call_sid="CA2", at=300.0, node="agent", session=earlier
    )
    bundle = bundle_of(turn)
    assert bundle["resumes"] == 1 and isinstance(bundle["ivr_seconds"], float)
    assert bundle["context"] == {"dob": "***"}


def test_the_hold_prompt_sees_the_queue() -> None:
    flow = flow_of(
        FLOW.replace(
            "          context: [dob]\n",
            "          context: [dob]\n          hold: 'Caller {{ queue.position }} of {{ queue.size }}.'\n",
        )
    )
    [say] = engine.hold_prompt(flow, "agent", {"position": 2, "size": 5})
    assert isinstance(say, Say) and say.text == "Caller 2 of 5."
    [default] = engine.hold_prompt(flow_of(), "agent", {"position": None})
    assert isinstance(default, Say) and "shortly" in default.text
    [numbered] = engine.hold_prompt(flow_of(), "agent", {"position": 4})
    assert isinstance(numbered, Say) and "number 4" in numbered.text


def test_a_withheld_caller_asking_for_a_call_back_leaves_no_number_to_call() -> None:
    flow = flow_of()
    turn = engine.start(flow, caller="anonymous:CA9", call_sid="CA9", at=100.0)
    turn = press(flow, press(flow, turn, "12"), "34")
    turn = engine.after_transfer(flow, turn.session, TransferResult.QUEUE_FULL, 200.0)
    [callback] = [e for e in turn.effects if isinstance(e, RequestCallback)]
    assert callback.number is None
