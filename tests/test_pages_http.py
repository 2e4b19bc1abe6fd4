"""Pages over HTTP: ``/p/<token>`` through the Flask test client on a real Redis, with the real
twilio SDK redirecting the live call and only its HTTP layer mocked by ``responses``.

Sessions are saved at the flow's wait_for node and links issued as the sender issues them.
Bad input: a tampered token, a token for another page, an expired link (renewals once each),
a link of an earlier conversation, a failed check that keeps what was typed, a second
submission, Twilio failing (the call just ended, a transient error), and Redis down.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
import pytest
import redis
import requests
import responses
from flask import Flask
from itsdangerous import TimestampSigner

from context.links import _SALT, LinkStore
from conversation.events import MemorySink
from ivr.session import Session
from ivr.states import EventName
from tests.support_pages import CALL_SID, CALLER, FLOW, issue, record_for, waiting_session

ACCOUNT = "AC" + "0" * 32
CALL_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL_SID}.json"
BASE = "https://ivr.example.com"


@pytest.fixture
def twilio() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        yield mocked


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def page_app(make_app: Callable[..., Flask], flows_dir: Path, sink: MemorySink) -> Flask:
    (flows_dir / "rebook.yaml").write_text(FLOW)
    return make_app(
        TWILIO_ACCOUNT_SID=ACCOUNT, PUBLIC_BASE_URL=BASE, EVENT_SINKS=(sink,), DEFAULT_FLOW="rebook"
    )


def saved(app: Flask, **changes: Any) -> Session:
    """Save a session at the wait_for node of the app's rebook flow."""
    flow = app.extensions["omnivoice.catalog"].get("rebook")
    session = waiting_session(flow, **changes)
    versions = app.extensions["omnivoice.calls"].versions
    assert app.extensions["omnivoice.store"].save(session, 0, flow=versions.pin(flow))
    return session


def link(app: Flask, **changes: Any) -> str:
    flow = app.extensions["omnivoice.catalog"].get("rebook")
    return issue(app.extensions["omnivoice.links"], record_for(flow, **changes))


def session_of(app: Flask) -> Session:
    loaded = app.extensions["omnivoice.store"].load(CALLER, CALL_SID)
    assert loaded.session is not None
    return loaded.session


def names(sink: MemorySink) -> list[str]:
    return [event.name.value for event in sink.events]


def redirect_form(twilio: responses.RequestsMock) -> dict[str, list[str]]:
    [sent] = [c for c in twilio.calls if c.request.url == CALL_URL]
    return parse_qs(str(sent.request.body))


def test_opening_a_link_shows_the_flights_and_records_the_opening_once(
    page_app: Flask, sink: MemorySink
) -> None:
    saved(page_app)
    path = link(page_app)
    client = page_app.test_client()
    response = client.get(path)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Pick a new flight, Ana" in html and "OV 123 at 9:40" in html
    assert '<label class="choice" for="c-choice-1">' in html
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert client.get(path).status_code == 200
    assert names(sink).count("page_opened") == 1
    assert session_of(page_app).pages["flights"]["status"] == "opened"


def test_a_pick_redirects_the_live_call_to_its_answer_url(
    page_app: Flask, twilio: responses.RequestsMock, sink: MemorySink
) -> None:
    saved(page_app)
    path = link(page_app)
    twilio.add(responses.POST, CALL_URL, json={"sid": CALL_SID}, status=200)
    response = page_app.test_client().post(path, data={"page": "flights", "choice": "OV 123"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "We&#39;re telling you on the phone now." in html
    assert "Thanks, OV 123 at 9:40 is held for you." in html
    form = redirect_form(twilio)
    assert form["Url"] == [f"{BASE}/voice/answer?step=3"] and form["Method"] == ["POST"]
    session = session_of(page_app)
    assert session.variables["rebooking"] == {"choice": "OV 123", "label": "OV 123 at 9:40"}
    assert session.pages["flights"]["call"] == "redirected"
    assert names(sink) == ["page_submitted", "call_redirected"]
    assert all(event.channel == "web" for event in sink.events)


def test_the_same_submission_again_is_idempotent(
    page_app: Flask, twilio: responses.RequestsMock, sink: MemorySink
) -> None:
    saved(page_app)
    path = link(page_app)
    twilio.add(responses.POST, CALL_URL, json={"sid": CALL_SID}, status=200)
    client = page_app.test_client()
    first = client.post(path, data={"choice": "OV 123"})
    second = client.post(path, data={"choice": "OV 123"})
    assert first.status_code == second.status_code == 200
    assert first.get_data() == second.get_data()
    assert len(twilio.calls) == 1
    assert names(sink) == ["page_submitted", "call_redirected"]


def test_a_failed_check_shows_why_and_keeps_what_was_typed(
    page_app: Flask, twilio: responses.RequestsMock, sink: MemorySink
) -> None:
    saved(page_app)
    path = link(page_app, page="details")
    form = {"page": "details", "email": "ana@example", "card": "42", "note": "<b>aisle</b>"}
    response = page_app.test_client().post(path, data=form)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'value="ana@example"' in html
    assert "&lt;b&gt;aisle&lt;/b&gt;</textarea>" in html  # kept, and escaped
    assert 'aria-describedby="e-email"' in html and 'id="e-email"' in html
    assert "Please enter the last four digits of your card." in html
    assert names(sink) == ["page_rejected"]
    assert sink.events[0].data["fields"] == ["card", "email"]
    assert "ana@example" not in repr(sink.events[0].to_dict())
    assert not twilio.calls
    assert "details" not in session_of(page_app).variables


def test_a_tampered_token_is_refused(page_app: Flask) -> None:
    saved(page_app)
    path = link(page_app)
    # another link's id under this one's signature (a changed last character of the signature
    # may only flip bits base64 drops, and still verify)
    bad = path.replace("/p/LK1", "/p/LK2", 1)
    assert bad != path
    response = page_app.test_client().get(bad)
    assert response.status_code == 403
    assert "This link does not work" in response.get_data(as_text=True)
    assert page_app.test_client().post(bad, data={"choice": "OV 123"}).status_code == 403


def test_a_token_for_another_page_is_refused(
    page_app: Flask, twilio: responses.RequestsMock
) -> None:
    saved(page_app)
    client = page_app.test_client()
    posted = client.post(link(page_app), data={"page": "details", "email": "a@b.co"})
    assert posted.status_code == 403
    unknown = client.get(link(page_app, page="nowhere", link="LK" + "2" * 20))
    assert unknown.status_code == 403
    assert "flights" not in session_of(page_app).pages
    assert not twilio.calls


def test_an_expired_link_offers_a_new_link_and_a_call_back_each_once(
    page_app: Flask, sink: MemorySink
) -> None:
    saved(page_app)
    flow = page_app.extensions["omnivoice.catalog"].get("rebook")
    store: LinkStore = page_app.extensions["omnivoice.links"]
    record = record_for(flow, expires=60)
    store.issue(record)
    old = TimestampSigner(page_app.config["SECRET_KEY"], salt=_SALT)
    old.get_timestamp = lambda: int(time.time()) - 3600  # type: ignore[method-assign]
    path = "/p/" + old.sign(record.id).decode()
    client = page_app.test_client()
    response = client.get(path)
    assert response.status_code == 410
    html = response.get_data(as_text=True)
    assert "Text me a new link" in html and "Call me back" in html
    assert client.post(path + "/renew", data={"what": "sms"}).status_code == 200
    assert client.post(path + "/renew", data={"what": "sms"}).status_code == 429
    assert client.post(path + "/renew", data={"what": "callback"}).status_code == 200
    assert client.post(path + "/renew", data={"what": "callback"}).status_code == 429
    assert client.post(path + "/renew", data={"what": "pigeon"}).status_code == 400
    assert names(sink) == ["message_queued", "callback_requested"]
    queued = sink.events[0].data
    assert queued["channel"] == "sms" and len(queued["links"]) == 1
    assert any(entry["status"] == "queued" for entry in session_of(page_app).messages.values())


def test_a_link_of_an_earlier_conversation_is_gone(page_app: Flask) -> None:
    saved(page_app, conversation="d" * 32)
    response = page_app.test_client().get(link(page_app))
    assert response.status_code == 410
    assert "earlier conversation" in response.get_data(as_text=True)


def test_a_link_whose_session_is_gone_is_gone_too(page_app: Flask) -> None:
    response = page_app.test_client().get(link(page_app))
    assert response.status_code == 410


def test_a_redirect_failing_because_the_call_ended_keeps_the_submission(
    page_app: Flask, twilio: responses.RequestsMock, sink: MemorySink
) -> None:
    saved(page_app)
    body = {"code": 21220, "message": "Call is not in-progress. Cannot redirect.", "status": 400}
    twilio.add(responses.POST, CALL_URL, json=body, status=400)
    response = page_app.test_client().post(link(page_app), data={"choice": "OV 456"})
    assert response.status_code == 200
    assert "pick this up next time you call" in response.get_data(as_text=True)
    assert len(twilio.calls) == 1  # a call that ended is not tried again
    session = session_of(page_app)
    assert session.variables["rebooking"]["choice"] == "OV 456"
    assert session.pages["flights"]["status"] == "submitted"
    assert session.pages["flights"]["call"] == "ended"
    assert names(sink) == ["page_submitted"]


def test_a_transient_twilio_failure_is_tried_once_more(
    page_app: Flask, twilio: responses.RequestsMock, sink: MemorySink
) -> None:
    saved(page_app)
    twilio.add(responses.POST, CALL_URL, json={"code": 20429, "message": "busy"}, status=429)
    twilio.add(responses.POST, CALL_URL, json={"sid": CALL_SID}, status=200)
    response = page_app.test_client().post(link(page_app), data={"choice": "OV 123"})
    assert "telling you on the phone now" in response.get_data(as_text=True)
    assert len(twilio.calls) == 2
    assert names(sink) == ["page_submitted", "call_redirected"]


def test_twilio_not_answering_twice_keeps_the_submission(
    page_app: Flask, twilio: responses.RequestsMock
) -> None:
    saved(page_app)
    twilio.add(responses.POST, CALL_URL, body=requests.ConnectTimeout("slow"))
    twilio.add(responses.POST, CALL_URL, body=requests.ConnectTimeout("slow"))
    response = page_app.test_client().post(link(page_app), data={"choice": "OV 123"})
    assert response.status_code == 200
    assert len(twilio.calls) == 2
    assert session_of(page_app).pages["flights"]["call"] == "failed"


def test_no_live_call_means_no_redirect(page_app: Flask, twilio: responses.RequestsMock) -> None:
    saved(page_app, call_status="completed")
    response = page_app.test_client().post(link(page_app), data={"choice": "OV 123"})
    assert response.status_code == 200
    assert "pick this up next time you call" in response.get_data(as_text=True)
    assert not twilio.calls


def test_a_change_after_the_call_used_the_answer_says_it_was_received(
    page_app: Flask, twilio: responses.RequestsMock
) -> None:
    saved(page_app)
    path = link(page_app)
    twilio.add(responses.POST, CALL_URL, json={"sid": CALL_SID}, status=200)
    client = page_app.test_client()
    client.post(path, data={"choice": "OV 123"})
    store = page_app.extensions["omnivoice.store"]
    loaded = store.load(CALLER, CALL_SID)
    entry = {**loaded.session.pages["flights"], "used": True}  # as the engine marks it
    moved = loaded.session.evolve(step=4, node="picked", waiting=None, pages={"flights": entry})
    assert store.save(moved, loaded.seq)
    response = client.post(path, data={"choice": "OV 456"})
    assert response.status_code == 409
    assert "already received your answer" in response.get_data(as_text=True)
    assert session_of(page_app).variables["rebooking"]["choice"] == "OV 123"
    assert "<form" not in client.get(path).get_data(as_text=True)


def test_redis_down_is_a_friendly_503(flows_dir: Path, make_app: Callable[..., Flask]) -> None:
    (flows_dir / "rebook.yaml").write_text(FLOW)
    working = make_app()
    path = link(working)
    dead = redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.2, socket_connect_timeout=0.2)
    app = make_app(REDIS_CLIENT=dead)
    client = app.test_client()
    for response in (client.get(path), client.post(path, data={"choice": "OV 123"})):
        assert response.status_code == 503
        assert "try again in a moment" in response.get_data(as_text=True)
        assert response.headers["Retry-After"] == "10"


def test_every_input_has_a_label_and_the_page_needs_no_script(page_app: Flask) -> None:
    saved(page_app)
    html = page_app.test_client().get(link(page_app, page="details")).get_data(as_text=True)
    ids = re.findall(r'<(?:input|textarea) id="([^"]+)"', html)
    assert ids and all(f'<label for="{i}">' in html for i in ids)
    assert "<script" not in html and '<html lang="en">' in html
    assert 'name="viewport"' in html


def test_opening_is_an_event_of_the_same_session(page_app: Flask, sink: MemorySink) -> None:
    saved(page_app)
    page_app.test_client().get(link(page_app))
    [event] = sink.events
    assert event.name == EventName.PAGE_OPENED
    assert event.call_sid == CALL_SID and event.conversation == "c" * 32


def test_an_oversized_form_is_refused_and_changes_nothing(
    page_app: Flask, sink: MemorySink
) -> None:
    saved(page_app)
    response = page_app.test_client().post(link(page_app), data={"choice": "x" * 70_000})
    assert response.status_code == 413
    assert "too much to send" in response.get_data(as_text=True)
    assert "flights" not in session_of(page_app).pages and sink.events == []


def test_a_sensitive_value_is_never_shown_back_on_the_page(
    page_app: Flask, twilio: responses.RequestsMock
) -> None:
    saved(page_app)
    path = link(page_app, page="details")
    client = page_app.test_client()
    answer = client.post(path, data={"email": "ana@example.com", "card": "4321"})
    assert answer.status_code == 200
    reopened = client.get(path)
    assert reopened.status_code == 200
    for html in (answer.get_data(as_text=True), reopened.get_data(as_text=True)):
        assert 'value="ana@example.com"' in html  # what is not sensitive fills the form
        assert "4321" not in html
    assert session_of(page_app).variables["details"]["card"] == "4321"  # the flow still has it


def test_a_double_tap_redirects_the_call_once(
    page_app: Flask, twilio: responses.RequestsMock, sink: MemorySink
) -> None:
    saved(page_app)
    path = link(page_app)
    client = page_app.test_client()
    second: list[Any] = []
    taps = [0]

    def redirected(_request: Any) -> tuple[int, dict[str, str], str]:
        taps[0] += 1
        if taps[0] == 1:  # the same form again, while the first is still telling the call
            second.append(client.post(path, data={"choice": "OV 123"}))
        return 200, {}, orjson.dumps({"sid": CALL_SID}).decode()

    twilio.add_callback(responses.POST, CALL_URL, callback=redirected)
    first = client.post(path, data={"choice": "OV 123"})
    assert first.status_code == second[0].status_code == 200
    assert len([c for c in twilio.calls if c.request.url == CALL_URL]) == 1
    assert names(sink) == ["page_submitted", "call_redirected"]
    assert session_of(page_app).pages["flights"]["call"] == "redirected"
