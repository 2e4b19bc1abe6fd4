"""Transfer edge cases: a retried result whose answer was another transfer, short secrets in
agents' texts, a second call beside a queued caller, hold prompts without a position, and who
the caller may be (real front, real Redis, the pure engine where it is enough)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask

from tests.support_twilio import CALLER, post, spoken, twiml, verbs

OVERFLOW_FLOW = """\
    id: overflow
    numbers: ["+14155550100"]
    start: first
    nodes:
      first:
        transfer:
          queue: support
          on: {queue_full: second}
      second:
        say: Trying our other team.
        transfer:
          queue: overflow
"""


@pytest.fixture
def overflow(make_app: Callable[..., Flask], flows_dir: Path) -> Flask:
    (flows_dir / "airline.yaml").unlink()
    (flows_dir / "overflow.yaml").write_text(textwrap.dedent(OVERFLOW_FLOW))
    return make_app()


def path_of(url: str | None) -> str:
    assert url is not None
    parts = urlsplit(url)
    return parts.path + "?" + parts.query


def test_a_retried_result_whose_answer_was_another_transfer_gets_that_transfer_again(
    overflow: Flask,
) -> None:
    client = overflow.test_client()
    form = {"CallSid": "CA" + "7" * 32, "From": CALLER, "To": "+14155550100"}
    start = twiml(post(client, "/voice", form))
    enqueue = start.find("Enqueue")
    assert enqueue is not None and enqueue.text == "support"
    action = path_of(enqueue.get("action"))
    first = twiml(post(client, action, {**form, "QueueResult": "queue-full"}))
    assert first.find("Enqueue") is not None and first.findtext("Enqueue") == "overflow"
    # Twilio did not get the first answer in time and posts the same result again: an empty
    # document would hang up on a caller who is on their way to the second queue.
    again = twiml(post(client, action, {**form, "QueueResult": "queue-full"}))
    assert verbs(again) == verbs(first)
    assert again.findtext("Enqueue") == "overflow"


CARD_FLOW = """\
    id: cards
    numbers: ["+14155550100"]
    sensitive: [cvv]
    start: cvv
    nodes:
      cvv:
        description: "checking security code {{ cvv }}"
        gather: {prompt: Key the three digits on the back of your card., num_digits: 3}
        save_as: cvv
        next: desk
      desk:
        description: "after code {{ cvv }}"
        transfer:
          number: "+14155550199"
          reason: "security code {{ cvv }} keyed"
          whisper: "Code {{ cvv }} was keyed."
          on: {no_answer: later}
      later:
        callback: {reason: "call back, code {{ cvv }}"}
        say: We will call you back.
        hangup: true
"""


@pytest.fixture
def cards(make_app: Callable[..., Flask], flows_dir: Path) -> Flask:
    (flows_dir / "airline.yaml").unlink()
    (flows_dir / "cards.yaml").write_text(textwrap.dedent(CARD_FLOW))
    return make_app()


def test_a_short_sensitive_value_in_a_reason_whisper_label_or_callback_is_masked(
    cards: Flask,
) -> None:
    client = cards.test_client()
    form = {"CallSid": "CA" + "8" * 32, "From": CALLER, "To": "+14155550100"}
    gather = twiml(post(client, "/voice", form)).find("Gather")
    assert gather is not None
    dial = twiml(post(client, path_of(gather.get("action")), {**form, "Digits": "417"}))
    assert dial.find("Dial") is not None
    post(client, path_of(dial.find("Dial").get("action")), {**form, "DialCallStatus": "no-answer"})
    bundle = cards.extensions["omnivoice.handoffs"].for_call(form["CallSid"])
    assert bundle["reason"] == "security code *** keyed"
    assert bundle["summary"] == "Code *** was keyed."
    assert [visit["label"] for visit in bundle["path"]] == [
        "checking security code ***",
        "after code ***",
    ]
    feed = cards.extensions["omnivoice.feed"].after("0-0")
    callbacks = [e.event for e in feed if e.event["name"] == "callback_requested"]
    assert [c["data"]["reason"] for c in callbacks] == ["call back, code ***"]
    # No text says it (times and ids are left out: a 3-digit run turns up in them by chance).
    assert not [t for t in words_in([entry.event for entry in feed]) if "417" in t]


IDS = {"id", "handoff_id", "call_sid", "conversation", "version", "previous", "sid"}


def words_in(value: object) -> list[str]:
    """Every text inside ``value`` except ids and hashes (numbers are times and counts)."""
    if isinstance(value, dict):
        return [t for k, v in value.items() if k not in IDS for t in words_in(v)]
    if isinstance(value, list):
        return [t for item in value for t in words_in(item)]
    return [value] if isinstance(value, str) else []


def test_a_second_transfer_in_the_same_call_is_not_a_caller_calling_back(overflow: Flask) -> None:
    client = overflow.test_client()
    form = {"CallSid": "CA" + "9" * 32, "From": CALLER, "To": "+14155550100"}
    enqueue = twiml(post(client, "/voice", form)).find("Enqueue")
    assert enqueue is not None
    post(client, path_of(enqueue.get("action")), {**form, "QueueResult": "queue-full"})
    bundle = overflow.extensions["omnivoice.handoffs"].for_call(form["CallSid"])
    assert bundle["route"]["target"] == "overflow" and len(bundle["previous"]) == 1
    assert "calling back" not in bundle["summary"]


def test_a_second_call_from_the_number_leaves_a_queued_caller_their_transfer(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    from tests.test_transfers import FLOW, ring

    (flows_dir / "airline.yaml").unlink()
    (flows_dir / "desk.yaml").write_text(textwrap.dedent(FLOW))
    desk = make_app()
    queued = ring(desk, "1", "4321")
    assert queued.ended == "enqueue"
    other = ring(desk)  # another line behind the same number, while the first one waits
    assert other.gather is not None
    queued.transfer_ends("queue-full")  # the flow's node for it: offer a call back
    assert queued.last_heard.startswith("We will call you back.")
    assert queued.ended == "hangup"


def test_a_hold_prompt_naming_a_position_twilio_did_not_send_never_says_none(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()  # the demo flow: "You are number {{ queue.position }} in line."
    client = app.test_client()
    form = {"CallSid": "CA" + "1" * 32, "From": CALLER, "QueueTime": "5"}  # as TaskRouter sends
    hold = twiml(post(client, "/voice/wait?flow=airline&node=agent&h=HO" + "1" * 32, form))
    heard = " ".join(spoken(hold))
    assert "None" not in heard
    assert heard == "Thank you for waiting. Someone will be with you shortly."
    with_position = twiml(
        post(client, "/voice/wait?flow=airline&node=agent&h=HOx", {**form, "QueuePosition": "3"})
    )
    assert spoken(with_position) == ["Thanks for holding. You are number 3 in line."]


def test_a_customer_calling_from_their_own_number_is_not_uncertain_for_a_shared_other_one() -> None:
    from ivr import engine
    from ivr.flow import load_flow_text
    from ivr.turn import AttachHandoff

    flow = load_flow_text(
        "start: agent\nnodes:\n  agent:\n    transfer: {queue: support}\n", "t.yaml", "t"
    )
    card = {"name": "Ana Ruiz", "customer": 7, "shared": ["+14155550100"]}  # the home line
    turn = engine.start(
        flow, caller=CALLER, call_sid="CA1", at=100.0, card=card, identified=("caller_id",)
    )  # from her own mobile
    [attach] = [e for e in turn.effects if isinstance(e, AttachHandoff)]
    caller = attach.bundle["caller"]
    assert caller["possible_customers"] == 1
    assert caller["confidence"] == "medium"
    assert "identity uncertain" not in attach.bundle["summary"]
