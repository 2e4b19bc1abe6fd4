"""One session per caller per flow: a caller who rings two of the company's numbers in turn
keeps their progress in both, each resumed within its own window, through the webhooks and real
Redis (single, Cluster and Sentinel)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest
from flask import Flask

from ivr import messages
from ivr.session import Session
from ivr.turn import SendMessage
from jobs.outcomes import Outcomes
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_twilio import CALLER, post

PAYMENTS_LINE, MENU_LINE = "+14155550101", "+14155550102"
PAYMENTS = f"""\
id: payments
numbers: ["{PAYMENTS_LINE}"]
resume: {{within: 30m, ask: false}}
start: amount
nodes:
  amount:
    description: agreeing an amount
    gather: {{prompt: Key in the amount you can pay each month., num_digits: 3}}
    save_as: monthly
    next: day
  day:
    description: choosing a day of the month
    gather: {{prompt: "{{{{ monthly }}}} a month. Which day of the month?", num_digits: 2}}
    save_as: day
    next: done
  done:
    say: "Agreed: {{{{ monthly }}}} on day {{{{ day }}}}."
    hangup: true
"""
MENU = f"""\
id: menu
numbers: ["{MENU_LINE}"]
resume: {{within: 30m, ask: false}}
start: main
nodes:
  main:
    gather: {{prompt: Press 1 for opening hours., num_digits: 1}}
    on: {{"1": which_store}}
  which_store:
    description: choosing a store
    gather: {{prompt: Key in your store number., num_digits: 2}}
    save_as: store
    next: hours
  hours:
    say: "Store {{{{ store }}}} opens at nine."
    hangup: true
"""


@pytest.fixture
def lines(make_app: Callable[..., Flask], flows_dir: Path) -> Flask:
    (flows_dir / "payments.yaml").write_text(textwrap.dedent(PAYMENTS))
    (flows_dir / "menu.yaml").write_text(textwrap.dedent(MENU))
    return make_app()


def call(app: Flask, line: str) -> Call:
    return Call(FlaskTransport(app), AUTH_TOKEN, called=line).dial()


def session_of(app: Flask) -> Session:
    found = app.extensions["omnivoice.store"].load(CALLER).session
    assert found is not None
    return found


def test_a_caller_who_rings_two_numbers_in_turn_keeps_progress_in_both(lines: Flask) -> None:
    first = call(lines, PAYMENTS_LINE).press("120")
    assert first.last_heard.startswith("120 a month.")
    first.hang_up()
    menu = call(lines, MENU_LINE).press("1")
    assert menu.last_heard == "Key in your store number."
    menu.hang_up()
    back = call(lines, PAYMENTS_LINE)  # the payment arrangement was kept
    assert back.last_heard == "120 a month. Which day of the month?"
    back.press("15")
    assert back.last_heard == "Agreed: 120 on day 15."
    again = call(lines, MENU_LINE)  # and so was the menu's progress
    assert again.last_heard == "Key in your store number."
    again.press("42")
    assert again.last_heard == "Store 42 opens at nine."


def test_the_parked_session_leaves_redis_once_it_is_picked_up(lines: Flask) -> None:
    call(lines, PAYMENTS_LINE).press("120").hang_up()
    call(lines, MENU_LINE).hang_up()
    store = lines.extensions["omnivoice.store"]
    parked = store.keys.flow_session(CALLER, "payments")
    assert store.redis.exists(parked) and store.redis.ttl(parked) > 0
    assert session_of(lines).flow_id == "menu"
    call(lines, PAYMENTS_LINE).hang_up()
    assert not store.redis.exists(parked)
    assert store.redis.exists(store.keys.flow_session(CALLER, "menu"))
    assert session_of(lines).flow_id == "payments"


def test_each_flow_resumes_only_within_its_own_window(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    moment = [1_000_000.0]
    (flows_dir / "payments.yaml").write_text(textwrap.dedent(PAYMENTS))
    (flows_dir / "menu.yaml").write_text(textwrap.dedent(MENU).replace("within: 30m", "within: 1m"))
    app = make_app(CLOCK=lambda: moment[0])
    call(app, PAYMENTS_LINE).press("120").hang_up()
    call(app, MENU_LINE).press("1").hang_up()
    moment[0] += 10 * 60  # past the menu's window, within the payments'
    assert call(app, PAYMENTS_LINE).last_heard == "120 a month. Which day of the month?"
    assert call(app, MENU_LINE).last_heard == "Press 1 for opening hours."


def test_a_live_call_in_one_flow_is_not_disturbed_by_a_call_to_another(lines: Flask) -> None:
    live = call(lines, PAYMENTS_LINE).press("120")
    other = call(lines, MENU_LINE).press("1")  # while the first call is still connected
    assert other.last_heard == "Key in your store number."
    live.press("15")
    assert live.last_heard == "Agreed: 120 on day 15."


def test_a_change_for_a_flow_the_caller_has_left_lands_in_that_flow_s_session(
    lines: Flask,
) -> None:
    call(lines, PAYMENTS_LINE).press("120").hang_up()
    call(lines, MENU_LINE).press("1").hang_up()
    service = lines.extensions["omnivoice.calls"]

    def change(session: Session, _now: float) -> tuple[Session, list[object]]:
        return session.evolve(variables={**session.variables, "monthly": "150"}), []

    saved = service.amend(CALLER, change, flow="payments")  # e.g. a page of the payments flow
    assert saved is not None and saved.flow_id == "payments"
    assert session_of(lines).flow_id == "menu"  # the menu's session was not touched
    back = call(lines, PAYMENTS_LINE)
    assert back.last_heard == "150 a month. Which day of the month?"
    assert service.amend(CALLER, change, flow="nosuchflow") is None


def test_a_text_s_outcome_lands_in_its_flow_s_session_after_a_call_to_another_number(
    lines: Flask,
) -> None:
    first = call(lines, PAYMENTS_LINE).press("120")
    first.hang_up()
    service = lines.extensions["omnivoice.calls"]
    text = SendMessage("MK" + "a" * 30, "sms", CALLER, "Your plan", "day")

    def queue(session: Session, now: float) -> tuple[Session, list[object]]:
        return messages.queued(session, text, now), []

    assert service.amend(CALLER, queue) is not None  # as the payments flow queued it
    call(lines, MENU_LINE).hang_up()  # the payments session is kept aside now
    job = {"key": text.key, "caller": CALLER, "call_sid": first.call_sid, "channel": "sms"}
    outcomes = Outcomes(service)
    assert outcomes.record({**job, "flow": "payments"}, messages.SENT, sid="SM" + "1" * 32)
    parked = lines.extensions["omnivoice.store"].load_parked(CALLER, "payments").session
    assert parked is not None and parked.messages[text.key]["status"] == messages.SENT
    assert session_of(lines).flow_id == "menu" and text.key not in session_of(lines).messages
    path = "/sms/status?" + urlencode({"k": text.key, "c": CALLER, "f": "payments"})
    status = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered"}
    assert post(lines.test_client(), path, status).status_code == 204  # Twilio's word, later
    parked = lines.extensions["omnivoice.store"].load_parked(CALLER, "payments").session
    assert parked is not None and parked.messages[text.key]["status"] == messages.DELIVERED
