"""The screen-pop's "Send a page": an agent sends the caller one of their flow's pages by text
or email, through the conversation service, and what becomes of it shows on the card.

Real Redis, a real SQLite history database (consents), real calls handed over by a real flow,
the console through the Flask test client with its login and CSRF token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask

from console import board
from context.history import consents
from conversation.events import ConversationEvent
from conversation.feed_sink import for_agents
from conversation.message_jobs import open_job
from ivr import links
from ivr.states import EventName
from ivr.turn import Note
from tests.support_console import (
    BANK_FLOW,
    CALLER,
    add_agent,
    close_history,
    console_config,
    hand_over,
    logged_in,
)

PAGES = """
pages:
  flights:
    title: Pick your new flight
    content: Choose one of the flights below.
  address:
    title: Your address
    content: Tell us where to send the card.
"""


@pytest.fixture
def app(make_app: Callable[..., Flask], flows_dir: Path, tmp_path: Path) -> Iterator[Flask]:
    config = console_config(flows_dir, tmp_path)
    (flows_dir / "bank.yaml").write_text(BANK_FLOW + PAGES)
    built = make_app(**config)
    add_agent(built)
    yield built
    close_history(built)


def fetch(client: Any, url: str, token: str, **form: str) -> Any:
    headers = {"X-CSRF-Token": token, "X-Requested-With": "fetch"}
    return client.post(url, data=form, headers=headers)


def queued(app: Flask, caller: str = CALLER) -> list[dict[str, Any]]:
    stream = app.extensions["omnivoice.events"]
    events = [orjson.loads(f[b"e"]) for _, f in stream.redis.xrange(stream.key_for(caller))]
    return [e for e in events if e["name"] == "message_queued"]


def card_html(html: str, call_sid: str) -> str:
    """The server-drawn card of ``call_sid`` in the board's page."""
    start = html.index(f'data-call-sid="{call_sid}"')
    return html[start : html.index("</article>", start)]


def opt_out(app: Flask, number: str = CALLER) -> None:
    sessions = app.extensions["omnivoice.console.history"]()
    with sessions.begin() as db:
        consents.record(db, number, "sms", "service", False, "texted STOP", datetime.now(UTC))


def test_the_card_offers_the_pages_of_the_callers_flow(app: Flask) -> None:
    call = hand_over(app)
    client, _ = logged_in(app)
    page = client.get("/agent").get_data(as_text=True)
    assert "data-flow-pages='{" in page  # for cards drawn live
    assert '"bank": [["flights", "Pick your new flight"], ["address", "Your address"]]' in page
    html = card_html(page, call.call_sid)
    assert f'action="/agent/calls/{call.call_sid}/page"' in html
    assert re.findall(r'<option value="(flights|address)">', html) == ["flights", "address"]
    assert 'value="sms" checked' in html


def test_sending_a_page_by_text_queues_a_sealed_job_for_the_caller(app: Flask) -> None:
    call = hand_over(app)
    client, token = logged_in(app)
    url = f"/agent/calls/{call.call_sid}/page"
    response = fetch(client, url, token, page="flights", channel="sms")
    assert response.status_code == 200, response.get_json()
    assert "by text to ***0123" in response.get_json()["message"]
    (event,) = queued(app)
    data = event["data"]
    assert (data["via"], data["node"], data["channel"]) == ("agent", "agent:ann", "sms")
    assert data["to"] != CALLER and "job" in data
    job = open_job(data, app.extensions["omnivoice.store"].codec.sealer)
    assert job["to"] == CALLER and job["via"] == "agent" and job["call_sid"] == call.call_sid
    assert job["body"].startswith("Pick your new flight: ")
    (link,) = job["links"]
    assert link["page"] == "flights" and links.marks(job["body"]) == [link["id"]]
    session = app.extensions["omnivoice.store"].load(CALLER, call.call_sid).session
    assert session.messages[data["key"]]["status"] == "queued"
    again = fetch(client, url, token, page="flights", channel="sms")  # pressed twice
    assert again.status_code == 200 and len(queued(app)) == 1


def test_sending_a_page_by_email_needs_an_address(app: Flask) -> None:
    call = hand_over(app)
    client, token = logged_in(app)
    url = f"/agent/calls/{call.call_sid}/page"
    missing = fetch(client, url, token, page="address", channel="email")
    assert (
        missing.status_code == 400 and "email address is missing" in missing.get_json()["message"]
    )
    wrong = fetch(client, url, token, page="address", channel="email", email="not-an-address")
    assert wrong.status_code == 400 and "is not an email address" in wrong.get_json()["message"]
    for two in ("kim@example.com,eve@example.com", "Kim <kim@example.com>"):  # one address only
        refused = fetch(client, url, token, page="address", channel="email", email=two)
        assert refused.status_code == 400, two
    sent = fetch(client, url, token, page="address", channel="email", email="kim@example.com")
    assert sent.status_code == 200
    (event,) = queued(app)
    job = open_job(event["data"], app.extensions["omnivoice.store"].codec.sealer)
    assert (job["to"], job["subject"], job["channel"]) == (
        "kim@example.com",
        "Your address",
        "email",
    )
    assert event["data"]["to"] == "k***@example.com"


@pytest.mark.parametrize(
    ("form", "status", "says"),
    [
        ({"page": "rebooking", "channel": "sms"}, 400, "not a page of this caller's flow"),
        ({"page": "flights", "channel": "fax"}, 400, "sms or email"),
        ({"page": "", "channel": "sms"}, 400, "Choose a page"),
    ],
)
def test_only_a_page_of_the_callers_flow_by_text_or_email_is_sent(
    app: Flask, form: dict[str, str], status: int, says: str
) -> None:
    call = hand_over(app)
    client, token = logged_in(app)
    response = fetch(client, f"/agent/calls/{call.call_sid}/page", token, **form)
    assert response.status_code == status and says in response.get_json()["message"]
    assert queued(app) == []


def test_a_page_without_the_csrf_token_is_refused(app: Flask) -> None:
    call = hand_over(app)
    client, _ = logged_in(app)
    response = client.post(
        f"/agent/calls/{call.call_sid}/page",
        data={"page": "flights", "channel": "sms"},
        headers={"X-Requested-With": "fetch"},
    )
    assert response.status_code == 400 and "security token" in response.get_json()["error"]
    assert queued(app) == []


def test_a_call_not_on_the_board_gets_no_page(app: Flask) -> None:
    client, token = logged_in(app)
    response = fetch(
        client, "/agent/calls/CA" + "9" * 32 + "/page", token, page="flights", channel="sms"
    )
    assert response.status_code == 404


def test_an_opted_out_number_is_offered_email_only_and_refused_texts(app: Flask) -> None:
    call = hand_over(app)
    opt_out(app)
    client, token = logged_in(app)
    html = card_html(client.get("/agent").get_data(as_text=True), call.call_sid)
    assert "opted out of texts" in html and 'value="sms"' not in html
    assert 'value="email" checked' in html
    response = fetch(
        client, f"/agent/calls/{call.call_sid}/page", token, page="flights", channel="sms"
    )
    assert response.status_code == 409 and "opted out" in response.get_json()["message"]
    assert queued(app) == []


def test_what_became_of_the_page_shows_on_the_screen_pop(app: Flask) -> None:
    call = hand_over(app)
    service = app.extensions["omnivoice.calls"]

    def submitted(session: Any, now: float) -> Any:
        note = Note(EventName.PAGE_SUBMITTED, {"page": "flights", "label": "OV 123 at 9:40"})
        return session, (Note(EventName.PAGE_OPENED, {"page": "flights"}), note)

    assert service.amend(CALLER, submitted, call_sid=call.call_sid, channel="web") is not None
    client, _ = logged_in(app)
    html = client.get("/agent").get_data(as_text=True)
    assert "Caller opened flights" in html
    assert "Caller picked: OV 123 at 9:40" in html


@pytest.mark.parametrize(
    ("name", "data", "line"),
    [
        ("page_submitted", {"page": "flights", "label": "OV 123 at 9:40"}, "Caller picked: OV 123 at 9:40"),
        ("page_submitted", {"page": "flights", "values": {"flight": "OV 123"}}, "Caller picked: OV 123"),
        (
            "page_submitted",
            {"page": "flights", "values": {"flight": "OV123", "label": "OV 123 at 9:40"}},
            "Caller picked: OV 123 at 9:40",
        ),
        ("page_submitted", {"page": "flights"}, "Caller picked: flights"),
        ("page_opened", {"page": "flights"}, "Caller opened flights"),
        ("message_sent", {"channel": "sms"}, "The text was sent"),
        ("message_failed", {"channel": "email", "error": "SMTP 550"}, "The email could not be sent: SMTP 550"),
        ("message_opted_out", {"channel": "sms"}, "The text was not sent: the number opted out of texts"),
    ],
)  # fmt: skip
def test_the_card_says_what_became_of_a_page_in_words(
    name: str, data: dict[str, Any], line: str
) -> None:
    assert board.page_line(name, data) == line
    event = ConversationEvent(EventName(name), 1.0, CALLER, "CA" + "1" * 32, data=data)
    assert for_agents(event)


def test_a_page_title_that_is_a_template_is_rendered_in_the_text_and_the_subject(
    make_app: Callable[..., Flask], flows_dir: Path, tmp_path: Path
) -> None:
    config = console_config(flows_dir, tmp_path)
    page = '  card:\n    title: "About {{ about }}:\\nwhat happens next"\n    content: Read on.\n'
    (flows_dir / "bank.yaml").write_text(BANK_FLOW + "pages:\n" + page)
    app = make_app(**config)
    add_agent(app)
    try:
        call = hand_over(app, about="a lost card")
        client, token = logged_in(app)
        url = f"/agent/calls/{call.call_sid}/page"
        assert fetch(client, url, token, page="card", channel="sms").status_code == 200
        email = fetch(client, url, token, page="card", channel="email", email="kim@example.com")
        assert email.status_code == 200
        sealer = app.extensions["omnivoice.store"].codec.sealer
        text, mail = (open_job(e["data"], sealer) for e in queued(app))
        assert text["body"].startswith("About a lost card: what happens next: ")
        assert mail["subject"] == "About a lost card: what happens next"
        assert "{{" not in text["body"] + mail["body"]
    finally:
        close_history(app)
