"""``POST /sms/status``: Twilio's word on a text lands in the session, signed or refused,
never moving a status backwards, and never a 500."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest
import responses
from flask import Flask

from ivr.turn import SendMessage
from tests.support_jobs import (
    BASE,
    CALLER,
    live_session,
    message_entry,
    mock_created,
    queue_message,
    queued_jobs,
    runtime,
    sending_app,
    stream_events,
)
from tests.support_twilio import post

SID = "SM" + "4" * 32


@pytest.fixture
def app(make_app: Callable[..., Flask], tmp_path: Path) -> Flask:
    return sending_app(make_app, tmp_path)


def _sent(app: Flask) -> SendMessage:
    message = queue_message(app, live_session(app))
    [job] = queued_jobs(app)
    with responses.RequestsMock() as rsps:
        mock_created(rsps, SID)
        runtime(app).jobs.deliver(job)
    return message


def _status(app: Flask, key: str, status: str, caller: str = CALLER, **extra: str) -> int:
    path = "/sms/status?" + urlencode({"k": key, "c": caller})
    params = {"MessageSid": SID, "MessageStatus": status, "AccountSid": "AC" + "a" * 32, **extra}
    answer = post(app.test_client(), path, params, signed_url=BASE + path)
    return answer.status_code


def test_delivered_lands_in_the_session(app: Flask) -> None:
    message = _sent(app)
    assert _status(app, message.key, "delivered") == 204
    entry = message_entry(app, message.key)
    assert (entry["status"], entry["sid"]) == ("delivered", SID)
    [event] = stream_events(app, "message_delivered")
    assert event["data"]["key"] == message.key and event["data"]["status"] == "delivered"


def test_undelivered_keeps_the_error_code(app: Flask) -> None:
    message = _sent(app)
    assert _status(app, message.key, "undelivered", ErrorCode="30003") == 204
    entry = message_entry(app, message.key)
    assert (entry["status"], entry["error_code"]) == ("undelivered", "30003")
    assert "30003" in entry["error"]
    [event] = stream_events(app, "message_failed")
    assert event["data"]["error_code"] == "30003"


def test_callbacks_out_of_order_never_move_a_status_backwards(app: Flask) -> None:
    message = _sent(app)
    assert _status(app, message.key, "delivered") == 204
    assert _status(app, message.key, "sent") == 204
    assert _status(app, message.key, "queued") == 204
    assert message_entry(app, message.key)["status"] == "delivered"
    assert len(stream_events(app, "message_delivered")) == 1


def test_an_unsigned_status_is_refused(app: Flask) -> None:
    message = _sent(app)
    path = "/sms/status?" + urlencode({"k": message.key, "c": CALLER})
    client = app.test_client()
    answer = client.post(path, data={"MessageSid": SID, "MessageStatus": "delivered"})
    assert answer.status_code == 403
    forged = post(
        client, path, {"MessageStatus": "delivered"}, signed_url=BASE + path, token="x" * 32
    )
    assert forged.status_code == 403
    assert message_entry(app, message.key)["status"] == "sent"


def test_a_changed_query_breaks_the_signature(app: Flask) -> None:
    message = _sent(app)
    signed = "/sms/status?" + urlencode({"k": message.key, "c": CALLER})
    other = "/sms/status?" + urlencode({"k": message.key, "c": "+14155550999"})
    params = {"MessageSid": SID, "MessageStatus": "failed"}
    assert post(app.test_client(), other, params, signed_url=BASE + signed).status_code == 403


@pytest.mark.parametrize("status", ["", "exploded", "DELIVERED!"])
def test_a_garbage_status_is_a_bad_request(app: Flask, status: str) -> None:
    message = _sent(app)
    assert _status(app, message.key, status) == 400
    assert message_entry(app, message.key)["status"] == "sent"


def test_a_status_without_a_key_is_a_bad_request(app: Flask) -> None:
    path = "/sms/status?" + urlencode({"c": CALLER})
    answer = post(app.test_client(), path, {"MessageStatus": "sent"}, signed_url=BASE + path)
    assert answer.status_code == 400


def test_an_unknown_message_or_session_is_answered_204(app: Flask) -> None:
    message = _sent(app)
    assert _status(app, "MK" + "0" * 30, "delivered") == 204
    assert _status(app, message.key, "delivered", caller="+14155550999") == 204
    assert message_entry(app, message.key)["status"] == "sent"
    assert not stream_events(app, "message_delivered")


def test_a_status_twilio_sends_before_sent_changes_nothing(app: Flask) -> None:
    message = _sent(app)
    assert _status(app, message.key, "sending") == 204
    assert message_entry(app, message.key)["status"] == "sent"


def test_a_status_for_a_flow_the_caller_has_left_lands_in_that_flow_s_session(
    app: Flask,
) -> None:
    message = _sent(app)
    store = app.extensions["omnivoice.store"]
    loaded = store.load(CALLER)
    first = loaded.session
    assert first is not None
    other = first.evolve(flow_id="menu", messages={}, call_sid="CA" + "9" * 32)
    assert store.save(other, loaded.seq, park=first.flow_id) is not None  # rang another number
    path = "/sms/status?" + urlencode({"k": message.key, "c": CALLER, "f": first.flow_id})
    params = {"MessageSid": SID, "MessageStatus": "delivered", "AccountSid": "AC" + "a" * 32}
    assert post(app.test_client(), path, params, signed_url=BASE + path).status_code == 204
    parked = store.load_parked(CALLER, first.flow_id).session
    assert parked is not None and parked.messages[message.key]["status"] == "delivered"
    main = store.load(CALLER).session
    assert main is not None and main.flow_id == "menu" and main.messages == {}
