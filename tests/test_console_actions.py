"""What agents do from the console: take a waiting call (Twilio's REST API, mocked with
``responses`` at its real URL) and write notes; both become events on the main event stream and
the agents' feed. Real Redis on every topology, a real SQLite history database, real flows.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import responses
from flask import Flask

from context.agent_feed import AgentFeed
from tests.support_console import (
    ACCOUNT,
    BASE,
    CALLER,
    add_agent,
    close_history,
    console_config,
    hand_over,
    logged_in,
)


@pytest.fixture
def app(make_app: Callable[..., Flask], flows_dir: Path, tmp_path: Path) -> Iterator[Flask]:
    built = make_app(**console_config(flows_dir, tmp_path))
    add_agent(built)  # ann, with a phone
    add_agent(built, "cleo", phone=None, client="cleo_desk")
    add_agent(built, "dan", phone=None)
    yield built
    close_history(built)


@pytest.fixture
def twilio() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        yield mocked


def call_url(call_sid: str) -> str:
    return f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Calls/{call_sid}.json"


def feed_events(app: Flask) -> list[dict[str, Any]]:
    feed: AgentFeed = app.extensions["omnivoice.feed"]
    return [entry.event for entry in feed.after("0-0")]


def stream_events(app: Flask, caller: str = CALLER) -> list[dict[str, Any]]:
    stream = app.extensions["omnivoice.events"]
    items = stream.redis.xrange(stream.key_for(caller))
    return [orjson.loads(fields[b"e"]) for _id, fields in items]


def posted_twiml(call: Any) -> ET.Element:
    body = call.request.body
    form = parse_qs(body if isinstance(body, str) else body.decode())
    return ET.fromstring(form["Twiml"][0])


def fetch(client: Any, url: str, token: str, **form: str) -> Any:
    headers = {"X-CSRF-Token": token, "X-Requested-With": "fetch"}
    return client.post(url, data=form, headers=headers)


def test_take_call_dials_the_agents_phone_and_records_call_taken(
    app: Flask, twilio: responses.RequestsMock
) -> None:
    call = hand_over(app)
    twilio.add(responses.POST, call_url(call.call_sid), json={"sid": call.call_sid}, status=200)
    client, token = logged_in(app)
    response = fetch(client, f"/agent/calls/{call.call_sid}/take", token)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["to"] == "+14155550188"
    assert len(twilio.calls) == 1
    root = posted_twiml(twilio.calls[0])
    dial = root.find("Dial")
    assert dial is not None and dial.get("timeout") == "20"
    action = urlsplit(dial.get("action") or "")
    assert f"{action.scheme}://{action.netloc}" == BASE
    assert action.path == "/voice/transfer"
    session = app.extensions["omnivoice.store"].load(CALLER).session
    assert parse_qs(action.query) == {"step": [str(session.step)]}
    number = dial.find("Number")
    assert number is not None and number.text == "+14155550188"
    handoff = next(e for e in feed_events(app) if e["name"] == "handoff")
    handoff_id = handoff["data"]["handoff_id"]
    assert parse_qs(urlsplit(number.get("url") or "").query) == {"h": [handoff_id]}
    taken = [e for e in feed_events(app) if e["name"] == "call_taken"]
    assert len(taken) == 1
    assert taken[0]["data"] == {"agent": "ann", "handoff_id": handoff_id, "to": "+14155550188"}
    for key in ("v", "caller", "call_sid", "conversation", "flow", "version"):
        assert taken[0][key] == handoff[key], key
    assert [e["name"] for e in stream_events(app)].count("call_taken") == 1


def test_take_call_rings_a_voice_sdk_client_with_the_handoff_id(
    app: Flask, twilio: responses.RequestsMock
) -> None:
    call = hand_over(app)
    twilio.add(responses.POST, call_url(call.call_sid), json={"sid": call.call_sid}, status=200)
    client, token = logged_in(app, "cleo")
    assert fetch(client, f"/agent/calls/{call.call_sid}/take", token).status_code == 200
    dial = posted_twiml(twilio.calls[0]).find("Dial")
    assert dial is not None
    target = dial.find("Client")
    assert target is not None
    assert target.findtext("Identity") == "cleo_desk"
    parameter = target.find("Parameter")
    assert parameter is not None and parameter.get("name") == "handoff_id"
    assert (parameter.get("value") or "").startswith("HO")


@pytest.mark.parametrize("status", [404, 500])
def test_twilio_refusing_leaves_the_caller_waiting_and_says_why(
    app: Flask, twilio: responses.RequestsMock, status: int
) -> None:
    call = hand_over(app)
    body = {"code": 20404, "message": "The requested resource was not found", "status": status}
    twilio.add(responses.POST, call_url(call.call_sid), json=body, status=status)
    before = app.extensions["omnivoice.store"].load(CALLER).session
    client, token = logged_in(app)
    response = fetch(client, f"/agent/calls/{call.call_sid}/take", token)
    assert response.status_code == 502
    assert "still waiting" in response.get_json()["message"]
    names = [e["name"] for e in feed_events(app)]
    assert "take_failed" in names and "call_taken" not in names
    failed = next(e for e in feed_events(app) if e["name"] == "take_failed")
    assert failed["data"]["agent"] == "ann" and str(status) in failed["data"]["error"]
    assert "take_failed" in [e["name"] for e in stream_events(app)]
    after = app.extensions["omnivoice.store"].load(CALLER).session
    assert after == before  # nothing about the caller changed


def test_a_network_failure_to_twilio_is_a_take_failed_too(
    app: Flask, twilio: responses.RequestsMock
) -> None:
    import requests

    call = hand_over(app)
    twilio.add(responses.POST, call_url(call.call_sid), body=requests.ConnectTimeout("slow"))
    client, token = logged_in(app)
    response = fetch(client, f"/agent/calls/{call.call_sid}/take", token)
    assert response.status_code == 502
    assert [e["name"] for e in feed_events(app)][-1] == "take_failed"


def test_an_agent_without_phone_or_client_is_told_so(
    app: Flask, twilio: responses.RequestsMock
) -> None:
    call = hand_over(app)
    client, token = logged_in(app, "dan")
    response = fetch(client, f"/agent/calls/{call.call_sid}/take", token)
    assert response.status_code == 409
    assert "no phone number or Voice SDK client" in response.get_json()["message"]
    assert len(twilio.calls) == 0


def test_a_call_not_handed_over_cannot_be_taken(app: Flask, twilio: responses.RequestsMock) -> None:
    client, token = logged_in(app)
    response = fetch(client, "/agent/calls/CA" + "0" * 32 + "/take", token)
    assert response.status_code == 404
    assert len(twilio.calls) == 0


@pytest.mark.parametrize("token_given", [None, "wrong-token"], ids=["missing", "wrong"])
def test_posts_without_the_csrf_token_change_nothing(
    app: Flask, twilio: responses.RequestsMock, token_given: str | None
) -> None:
    call = hand_over(app)
    client, _token = logged_in(app)
    before = feed_events(app)
    form = {"text": "hello", "disposition": "resolved"}
    if token_given:
        form["csrf_token"] = token_given
    for action in ("notes", "take"):
        response = client.post(f"/agent/calls/{call.call_sid}/{action}", data=form)
        assert response.status_code == 400
        assert "nothing was changed" in response.get_data(as_text=True)
    headers = {"X-CSRF-Token": token_given or ""}
    assert (
        client.post(f"/agent/calls/{call.call_sid}/notes", data=form, headers=headers).status_code
        == 400
    )
    assert feed_events(app) == before
    assert len(twilio.calls) == 0


def test_a_note_reaches_the_feed_and_the_event_stream(app: Flask) -> None:
    call = hand_over(app)
    client, token = logged_in(app)
    response = fetch(
        client, f"/agent/calls/{call.call_sid}/notes", token,
        text="  Card replaced; sent a new one.  ", disposition="resolved",
    )  # fmt: skip
    assert response.status_code == 200
    note = feed_events(app)[-1]
    handoff = next(e for e in feed_events(app) if e["name"] == "handoff")
    assert note["name"] == "agent_note"
    assert note["data"] == {
        "agent": "ann",
        "text": "Card replaced; sent a new one.",
        "disposition": "resolved",
        "handoff_id": handoff["data"]["handoff_id"],
    }
    assert (note["caller"], note["call_sid"], note["v"]) == (CALLER, call.call_sid, 1)
    assert note["conversation"] == handoff["conversation"] and note["flow"] == "bank"
    assert stream_events(app)[-1] == note


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ({"text": "   ", "disposition": ""}, "both are empty"),
        ({"text": "x" * 2001}, "at most 2000"),
        ({"text": "ok", "disposition": "maybe"}, "is not a disposition"),
    ],
    ids=["empty", "too-long", "unknown-disposition"],
)
def test_a_bad_note_is_refused_and_records_nothing(
    app: Flask, form: dict[str, str], says: str
) -> None:
    call = hand_over(app)
    client, token = logged_in(app)
    before = feed_events(app)
    response = fetch(client, f"/agent/calls/{call.call_sid}/notes", token, **form)
    assert response.status_code == 400
    assert says in response.get_json()["message"]
    assert feed_events(app) == before


def test_a_disposition_alone_is_a_note(app: Flask) -> None:
    call = hand_over(app)
    client, token = logged_in(app)
    response = fetch(client, f"/agent/calls/{call.call_sid}/notes", token, disposition="follow_up")
    assert response.status_code == 200
    assert feed_events(app)[-1]["data"]["disposition"] == "follow_up"


def test_a_call_already_taken_cannot_be_taken_again(
    app: Flask, twilio: responses.RequestsMock
) -> None:
    call = hand_over(app)
    twilio.add(responses.POST, call_url(call.call_sid), json={"sid": call.call_sid}, status=200)
    ann, ann_token = logged_in(app)
    assert fetch(ann, f"/agent/calls/{call.call_sid}/take", ann_token).status_code == 200
    cleo, cleo_token = logged_in(app, "cleo")
    second = fetch(cleo, f"/agent/calls/{call.call_sid}/take", cleo_token)
    assert second.status_code == 409
    assert "no longer waiting (connecting by ann)" in second.get_json()["message"]
    assert len(twilio.calls) == 1
