"""Attempt data on whole calls through the signed front and real Redis: a reprompt that replaces
the question and reads ``attempts``, ``max_attempts`` across both kinds, and the failed answers in
the handoff bundle the agents get (masked at a PIN)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from context.agent_feed import AgentFeed
from context.handoffs import HandoffStore
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN

FLOW = """\
    id: tries
    numbers: ["+14155550100"]
    sensitive: [pin]
    start: menu
    nodes:
      menu:
        gather:
          prompt: Press 1 for cards, 2 for loans.
          input: [dtmf, speech]
          num_digits: 1
          max_attempts: 3
          reprompt_mode: replace
        on: {"1|cards": pin, "2|loans": loans}
        no_input: {retries: 5, reprompt: "Still there? Press 1 or 2.", then: agent}
        no_match:
          retries: 5
          reprompt: "{{ attempts.menu.inputs | last }} is not an option. Press 1 or 2."
          then: agent
      loans:
        branch:
          - {if: "attempts.menu.no_match + attempts.menu.no_input > 0", then: slow_loans}
        next: quick_loans
      quick_loans:
        say: Loans.
        hangup: true
      slow_loans:
        say: "Loans, after {{ attempts.menu.no_match }} wrong answers."
        hangup: true
      pin:
        gather: {prompt: Key your PIN., num_digits: 4}
        validate: {pattern: "^[0-9]{4}$"}
        save_as: pin
        no_match: {retries: 1, then: agent}
        next: agent
      agent:
        transfer: {queue: support}
"""


@pytest.fixture
def tries(make_app: Callable[..., Flask], flows_dir: Path) -> Flask:
    (flows_dir / "airline.yaml").unlink()
    (flows_dir / "tries.yaml").write_text(textwrap.dedent(FLOW))
    return make_app()


def ring(app: Flask) -> Call:
    return Call(FlaskTransport(app), AUTH_TOKEN).dial()


def handoffs_of(app: Flask) -> HandoffStore:
    store: HandoffStore = app.extensions["omnivoice.handoffs"]
    return store


def feed_of(app: Flask) -> AgentFeed:
    feed: AgentFeed = app.extensions["omnivoice.feed"]
    return feed


def test_a_reprompt_replaces_the_question_and_names_the_wrong_answer(tries: Flask) -> None:
    call = ring(tries).press("7")
    assert call.last_heard == "7 is not an option. Press 1 or 2."
    gather = call.last.find("Gather")
    assert gather is not None
    assert [child.tag for child in gather] == ["Say"]
    call.say("mortgages")
    assert call.last_heard == "mortgages is not an option. Press 1 or 2."
    call.press("2")
    assert call.last_heard == "Loans, after 2 wrong answers."
    assert call.ended == "hangup"


def test_max_attempts_takes_the_caller_to_an_agent_with_the_failed_answers(tries: Flask) -> None:
    call = ring(tries).press("7").silence()
    assert call.last_heard == "Still there? Press 1 or 2."
    call.say("insurance")
    assert call.ended == "enqueue"
    bundle = handoffs_of(tries).for_call(call.call_sid)
    assert bundle is not None
    assert bundle["attempts"] == {
        "menu": {"no_match": 2, "no_input": 1, "inputs": ["7", "insurance"]}
    }
    assert bundle["reason"] == "no usable answer at menu after 3 tries in all"
    [handoff] = [e.event for e in feed_of(tries).after("0-0") if e.event["name"] == "handoff"]
    assert handoff["data"]["bundle"]["attempts"] == bundle["attempts"]


def test_failed_answers_at_a_pin_reach_nobody_in_clear(tries: Flask) -> None:
    call = ring(tries).press("1").press("98")
    assert call.gather is not None
    call.press("123")
    assert call.ended == "enqueue"
    bundle = handoffs_of(tries).for_call(call.call_sid)
    assert bundle is not None
    assert bundle["attempts"]["pin"] == {"no_match": 2, "inputs": ["***", "***"]}
    raw = json.dumps([e.event for e in feed_of(tries).after("0-0")]) + json.dumps(bundle)
    assert '"98"' not in raw and '"123"' not in raw
