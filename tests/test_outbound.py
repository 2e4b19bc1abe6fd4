"""Reaching out first: outbound calls and texts through the API and the CLI.

Twilio's REST API is mocked with ``responses`` at its real URLs (the SDK does the HTTP); the
outbound call's own webhooks go through the signed Twilio front; consent lives in a real SQLite
history database, and every attempt reaches the history through the real writer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from flask import Flask
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from context.history import consents, database
from context.history.models import Interaction
from context.history.writer import HistoryWriter
from tests.conftest import AUTH_TOKEN

ACCOUNT = "AC" + "0" * 32
CALLS = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
MESSAGES = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
OURS = "+14155550100"
CUSTOMER = "+14155550123"
TOKEN = "api-token-for-tests"
BASE = "https://omnivoice.example.com"
NOON_IN_CALIFORNIA = datetime(2026, 12, 1, 20, 0, tzinfo=UTC).timestamp()
MIDNIGHT_IN_CALIFORNIA = datetime(2026, 12, 2, 8, 0, tzinfo=UTC).timestamp()

REMINDER_FLOW = """
id: reminder
start: who
nodes:
  who:
    branch:
      - if: answered_by.startswith('machine')
        then: voicemail
    next: hello
  hello:
    gather:
      prompt: "Hello {{ name }}. Your appointment is at {{ when }}. Press 1 to confirm."
      num_digits: 1
    on: {"1": confirmed}
  confirmed:
    say: Thank you, see you then.
    hangup: true
  voicemail:
    say: "This is Omnivoice calling {{ name }} about the appointment at {{ when }}."
    hangup: true
"""


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def history_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    engine = database.open_engine(url)
    database.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def twilio() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        yield mocked


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON_IN_CALIFORNIA)


@pytest.fixture
def outbound_app(
    make_app: Callable[..., Flask], flows_dir: Path, history_url: str, clock: Clock
) -> Callable[..., Flask]:
    (flows_dir / "reminder.yaml").write_text(REMINDER_FLOW)

    def build(**overrides: Any) -> Flask:
        config = {
            "API_TOKEN": TOKEN,
            "TWILIO_ACCOUNT_SID": ACCOUNT,
            "TWILIO_PHONE_NUMBER": OURS,
            "PUBLIC_BASE_URL": BASE,
            "DATABASE_URL": history_url,
            "CLOCK": clock,
            **overrides,
        }
        return make_app(**config)

    return build


def api(app: Flask, body: Any, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = app.test_client().post("/api/outbound", json=body, headers=headers)
    return response.status_code, response.get_json()


def call_placed(twilio: responses.RequestsMock, sid: str = "CA" + "7" * 32) -> None:
    twilio.add(responses.POST, CALLS, json={"sid": sid, "status": "queued"}, status=201)


def sent_form(call: responses.Call) -> dict[str, list[str]]:
    body = call.request.body
    return parse_qs(body if isinstance(body, str) else (body or b"").decode())


def signed_post(app: Flask, url: str, fields: dict[str, str]) -> Any:
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, fields)
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return app.test_client().post(
        path, data=fields, headers={"X-Twilio-Signature": signature}, base_url=BASE
    )


def answered(app: Flask, url: str, sid: str, answered_by: str = "human") -> Any:
    """Twilio's webhook when the callee of the call we placed answers."""
    return signed_post(
        app,
        url,
        {
            "CallSid": sid, "AccountSid": ACCOUNT, "From": OURS, "To": CUSTOMER,
            "Direction": "outbound-api", "CallStatus": "in-progress", "AnsweredBy": answered_by,
        },
    )  # fmt: skip


def drain(app: Flask, url: str) -> list[Interaction]:
    engine = database.open_engine(url)
    HistoryWriter(app.extensions["omnivoice.events"], database.sessions(engine), "t").drain()
    with database.sessions(engine)() as db:
        rows = list(db.scalars(select(Interaction).order_by(Interaction.id)))
    engine.dispose()
    return rows


# ---- a call that runs a flow ---------------------------------------------------------------
def test_an_outbound_call_runs_its_flow_with_the_variables_when_answered(
    outbound_app: Callable[..., Flask], twilio: responses.RequestsMock, history_url: str
) -> None:
    app = outbound_app()
    sid = "CA" + "7" * 32
    call_placed(twilio, sid)
    status, body = api(
        app,
        {"to": "(415) 555-0123", "flow": "reminder", "variables": {"name": "Ada", "when": "3 PM"}},
    )
    assert (status, body) == (202, {"sid": sid, "channel": "voice", "to": CUSTOMER})
    sent = sent_form(twilio.calls[0])
    assert sent["To"] == [CUSTOMER] and sent["From"] == [OURS]
    assert sent["MachineDetection"] == ["Enable"]
    assert sent["StatusCallback"] == [f"{BASE}/voice/status"]
    url = sent["Url"][0]
    assert url.startswith(f"{BASE}/voice/outbound?t=")
    reply = answered(app, url, sid)
    assert reply.status_code == 200
    assert b"Hello Ada. Your appointment is at 3 PM. Press 1 to confirm." in reply.data
    rows = drain(app, history_url)
    assert [(r.contact_sid, r.direction, r.channel) for r in rows] == [(sid, "outbound", "voice")]
    card = app.extensions["omnivoice.store"].load(CUSTOMER, "CAnext", 0).card
    assert card is not None  # the customer's next call knows of it (history.last_contact)
    assert (card["contacts"][0]["sid"], card["contacts"][0]["direction"]) == (sid, "outbound")


def test_a_machine_gets_the_voicemail_branch_and_the_outcome_says_machine(
    outbound_app: Callable[..., Flask], twilio: responses.RequestsMock, history_url: str
) -> None:
    app = outbound_app()
    sid = "CA" + "8" * 32
    call_placed(twilio, sid)
    api(app, {"to": CUSTOMER, "flow": "reminder", "variables": {"name": "Ada", "when": "3 PM"}})
    reply = answered(app, sent_form(twilio.calls[0])["Url"][0], sid, "machine_end_beep")
    assert b"This is Omnivoice calling Ada about the appointment at 3 PM." in reply.data
    assert drain(app, history_url)[0].outcome == "machine"


def test_an_outbound_grant_is_used_by_one_call_only_and_cannot_be_forged(
    outbound_app: Callable[..., Flask], twilio: responses.RequestsMock
) -> None:
    app = outbound_app()
    sid = "CA" + "7" * 32
    call_placed(twilio, sid)
    api(app, {"to": CUSTOMER, "flow": "reminder", "variables": {"name": "Ada", "when": "3"}})
    url = sent_form(twilio.calls[0])["Url"][0]
    assert b"Hello Ada" in answered(app, url, sid).data
    assert b"Hello Ada" in answered(app, url, sid).data  # Twilio retrying the same call
    other = answered(app, url, "CA" + "9" * 32)  # the URL replayed for another call
    assert b"can't continue" in other.data and b"Hello" not in other.data
    forged = answered(app, url[:-4] + "AAAA", "CA" + "6" * 32)
    assert b"can't continue" in forged.data


def test_a_call_nobody_answers_is_recorded_as_no_answer(
    outbound_app: Callable[..., Flask], twilio: responses.RequestsMock, history_url: str
) -> None:
    app = outbound_app()
    sid = "CA" + "5" * 32
    call_placed(twilio, sid)
    api(app, {"to": CUSTOMER, "flow": "reminder"})
    status = signed_post(
        app,
        f"{BASE}/voice/status",
        {"CallSid": sid, "AccountSid": ACCOUNT, "From": OURS, "To": CUSTOMER,
         "Direction": "outbound-api", "CallStatus": "no-answer"},
    )  # fmt: skip
    assert status.status_code == 204
    assert [(r.contact_sid, r.outcome) for r in drain(app, history_url)] == [(sid, "no-answer")]


# ---- texts ----------------------------------------------------------------------------------
def test_a_text_is_sent_through_the_messages_api(
    outbound_app: Callable[..., Flask], twilio: responses.RequestsMock, history_url: str
) -> None:
    app = outbound_app()
    twilio.add(responses.POST, MESSAGES, json={"sid": "SM" + "1" * 32}, status=201)
    status, body = api(app, {"to": CUSTOMER, "channel": "sms", "body": "Your flight moved."})
    assert status == 202 and body["sid"] == "SM" + "1" * 32
    assert sent_form(twilio.calls[0])["Body"] == ["Your flight moved."]
    rows = drain(app, history_url)
    assert [(r.channel, r.direction) for r in rows] == [("sms", "outbound")]


# ---- refusals, each with its reason, each recorded ------------------------------------------
@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"to": "not a number", "flow": "reminder"}, 400, "is not a phone number"),
        ({"to": CUSTOMER, "flow": "nope"}, 404, "no flow named 'nope'"),
        ({"to": CUSTOMER, "channel": "sms"}, 400, "a text needs a body"),
        ({"to": CUSTOMER, "flow": "reminder", "purpose": "marketing"}, 403, "no consent"),
        ({"to": CUSTOMER, "flow": "reminder", "extra": 1}, 400, "extra"),
        ({"to": CUSTOMER, "channel": "fax"}, 400, "channel"),
        ([1, 2], 400, "JSON object"),
    ],
)
def test_bad_or_unwelcome_requests_are_refused_with_the_reason(
    outbound_app: Callable[..., Flask],
    twilio: responses.RequestsMock,
    body: Any,
    status: int,
    reason: str,
) -> None:
    got, answer = api(outbound_app(), body)
    assert got == status and reason in answer["error"], answer
    assert not twilio.calls  # Twilio was never asked


def test_the_api_needs_its_token_and_is_off_without_one(
    outbound_app: Callable[..., Flask], twilio: responses.RequestsMock
) -> None:
    body = {"to": CUSTOMER, "flow": "reminder"}
    assert api(outbound_app(), body, token=None)[0] == 401
    assert api(outbound_app(), body, token="wrong")[0] == 401
    status, answer = api(outbound_app(API_TOKEN=None), body)
    assert status == 503 and "API_TOKEN" in answer["error"]
    assert not twilio.calls


def test_quiet_hours_follow_the_recipients_local_time(
    outbound_app: Callable[..., Flask], twilio: responses.RequestsMock, clock: Clock
) -> None:
    clock.now = MIDNIGHT_IN_CALIFORNIA
    status, answer = api(outbound_app(), {"to": CUSTOMER, "flow": "reminder"})
    assert status == 409
    assert "00:00 in America/Los_Angeles, inside quiet hours (21:00-08:00)" in answer["error"]
    assert not twilio.calls


def test_consent_withdrawn_refuses_even_service_calls_and_granted_allows_marketing(
    outbound_app: Callable[..., Flask], twilio: responses.RequestsMock, history_url: str
) -> None:
    app = outbound_app()
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["customers", "consent", CUSTOMER, "--channel", "voice", "--purpose", "service",
              "--withdraw"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    status, answer = api(app, {"to": CUSTOMER, "flow": "reminder"})
    assert status == 403 and "said no to service" in answer["error"]
    runner.invoke(
        args=["customers", "consent", CUSTOMER, "--channel", "sms", "--purpose", "marketing"]
    )
    twilio.add(responses.POST, MESSAGES, json={"sid": "SM" + "2" * 32}, status=201)
    status, _ = api(
        app, {"to": CUSTOMER, "channel": "sms", "purpose": "marketing", "body": "Sale!"}
    )
    assert status == 202
    outcomes = [(r.channel, r.outcome) for r in drain(app, history_url)]
    assert outcomes == [("voice", "refused"), ("sms", None)]


def test_pacing_allows_one_call_a_second(
    outbound_app: Callable[..., Flask], twilio: responses.RequestsMock, clock: Clock
) -> None:
    app = outbound_app()
    call_placed(twilio)
    assert api(app, {"to": CUSTOMER, "flow": "reminder"})[0] == 202
    status, answer = api(app, {"to": "+14155550124", "flow": "reminder"})
    assert status == 429 and "at most 1 voice contact(s) a second" in answer["error"]
    clock.now += 1
    assert api(app, {"to": "+14155550124", "flow": "reminder"})[0] == 202


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        ({"code": 21211, "message": "The 'To' number is not valid.", "status": 400}, 400),
        ({"code": 20429, "message": "Too many requests", "status": 429}, 429),
        ({"code": 20500, "message": "Internal error", "status": 500}, 500),
    ],
)
def test_twilio_errors_are_recorded_as_failed_outcomes(
    outbound_app: Callable[..., Flask],
    twilio: responses.RequestsMock,
    history_url: str,
    reply: dict[str, Any],
    status: int,
) -> None:
    app = outbound_app()
    twilio.add(responses.POST, CALLS, json=reply, status=status)
    got, answer = api(app, {"to": CUSTOMER, "flow": "reminder"})
    assert got == 502 and str(reply["code"]) in answer["error"]
    assert [r.outcome for r in drain(app, history_url)] == ["failed"]


def test_the_history_database_down_refuses_rather_than_calls_unchecked(
    outbound_app: Callable[..., Flask], twilio: responses.RequestsMock
) -> None:
    app = outbound_app(DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/test")
    status, answer = api(app, {"to": CUSTOMER, "flow": "reminder"})
    assert status == 503 and "consent cannot be checked" in answer["error"]
    assert not twilio.calls


# ---- the command line ---------------------------------------------------------------------
def test_the_cli_places_calls_and_texts_and_says_why_it_refuses(
    outbound_app: Callable[..., Flask], twilio: responses.RequestsMock, clock: Clock
) -> None:
    app = outbound_app()
    runner = app.test_cli_runner()
    call_placed(twilio, "CA" + "4" * 32)
    placed = runner.invoke(
        args=["outbound", "call", CUSTOMER, "--flow", "reminder", "--var", "name=Ada"]
    )
    assert placed.exit_code == 0 and "CA" + "4" * 32 in placed.output
    assert "t=" in sent_form(twilio.calls[0])["Url"][0]
    clock.now += 1
    refused = runner.invoke(args=["outbound", "sms", "12", "--body", "hi"])
    assert refused.exit_code == 1 and "is not a phone number" in refused.output
    bad_var = runner.invoke(args=["outbound", "call", CUSTOMER, "--flow", "x", "--var", "oops"])
    assert bad_var.exit_code == 2 and "NAME=VALUE" in bad_var.output


def test_consents_are_per_channel_and_purpose(history_url: str) -> None:
    engine = database.open_engine(history_url)
    now = datetime.now(UTC)
    with database.sessions(engine).begin() as db:
        assert consents.decide(db, CUSTOMER, "voice", "service").allowed
        assert not consents.decide(db, CUSTOMER, "voice", "reminders").allowed
        consents.record(db, CUSTOMER, "voice", "reminders", True, "web form", now)
        assert consents.decide(db, CUSTOMER, "voice", "reminders").allowed
        assert not consents.decide(db, CUSTOMER, "sms", "reminders").allowed
    engine.dispose()


def test_quiet_hours_setting_is_checked_at_start(make_app: Callable[..., Flask]) -> None:
    from app import settings_from_env
    from ivr.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        settings_from_env({"OUTBOUND_QUIET_HOURS": "late"})
    assert "OUTBOUND_QUIET_HOURS" in str(caught.value)
    assert json.dumps(settings_from_env({})["OUTBOUND_PER_SECOND"]) == "1"


def test_an_outbound_call_answered_while_the_customer_waits_for_an_agent_leaves_their_transfer(
    outbound_app: Callable[..., Flask], twilio: responses.RequestsMock
) -> None:
    from simulator import Call, FlaskTransport

    app = outbound_app()
    queued = Call(FlaskTransport(app), AUTH_TOKEN, caller=CUSTOMER, base_url=BASE).dial()
    queued.press("0")  # the demo flow's main menu: to the agents' queue
    assert queued.ended == "enqueue"
    sid = "CA" + "7" * 32
    call_placed(twilio, sid)
    status, _ = api(app, {"to": CUSTOMER, "flow": "reminder", "variables": {"name": "Ada"}})
    assert status == 202
    assert answered(app, sent_form(twilio.calls[0])["Url"][0], sid).status_code == 200
    queued.transfer_ends("queue-full")  # the queued call still has its transfer to end
    assert "call you back" in queued.last_heard
