"""Texts through the job queue: the real twilio SDK with only its HTTP mocked at Twilio's URL,
the form it posts, Twilio's errors retried or recorded, consent, and the claim per key."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from flask import Flask

from context.history import consents, database
from jobs.outcome import Transient
from tests.support_jobs import (
    BASE,
    CALLER,
    FROM_NUMBER,
    MESSAGES_URL,
    form_of,
    live_session,
    message_entry,
    mock_created,
    queue_message,
    queued_jobs,
    runtime,
    sending_app,
    stream_events,
    twilio_message,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def app(make_app: Callable[..., Flask], tmp_path: Path) -> Flask:
    return sending_app(make_app, tmp_path)


def _error(rsps: responses.RequestsMock, status: int, code: int, message: str) -> None:
    body = {"code": code, "message": message, "more_info": "", "status": status}
    rsps.add(responses.POST, MESSAGES_URL, json=body, status=status)


def test_a_text_goes_out_with_its_signed_link_and_status_callback(app: Flask) -> None:
    call = live_session(app)
    message = queue_message(app, call)
    [job] = queued_jobs(app)
    with responses.RequestsMock() as rsps:
        mock_created(rsps, "SM" + "2" * 32)
        assert runtime(app).jobs.deliver(job) == "sent"
        fields = form_of(rsps.calls[0])
    assert fields["To"] == CALLER
    assert fields["From"] == FROM_NUMBER
    assert "MessagingServiceSid" not in fields
    url = fields["Body"].removeprefix("Pick a flight: ")
    assert url.startswith(f"{BASE}/p/") and "[[link:" not in fields["Body"]
    record = app.extensions["omnivoice.store"].redis  # the link was issued: it opens
    from context.links import LinkStore

    store = LinkStore(
        record, app.extensions["omnivoice.store"].keys, app.config["SECRET_KEY"], BASE
    )
    opened = store.open(url.rsplit("/", 1)[1])
    assert (opened.caller, opened.page, opened.call_sid) == (CALLER, "flights", call.call_sid)
    callback = urlsplit(fields["StatusCallback"])
    assert f"{callback.scheme}://{callback.netloc}{callback.path}" == f"{BASE}/sms/status"
    query = parse_qs(callback.query)
    assert query["k"] == [message.key] and query["c"] == [CALLER]
    assert query["f"] == [app.extensions["omnivoice.store"].load(CALLER).session.flow_id]
    entry = message_entry(app, message.key)
    assert (entry["status"], entry["sid"]) == ("sent", "SM" + "2" * 32)
    [sent] = stream_events(app, "message_sent")
    assert sent["data"]["key"] == message.key and sent["data"]["sid"] == "SM" + "2" * 32


def test_a_messaging_service_is_used_instead_of_a_number(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    service_sid = "MG" + "3" * 32
    app = sending_app(make_app, tmp_path, TWILIO_MESSAGING_SERVICE_SID=service_sid)
    queue_message(app, live_session(app), body="Your flight is confirmed.", page=None)
    [job] = queued_jobs(app)
    with responses.RequestsMock() as rsps:
        mock_created(rsps)
        runtime(app).jobs.deliver(job)
        fields = form_of(rsps.calls[0])
    assert fields["MessagingServiceSid"] == service_sid and "From" not in fields
    assert fields["Body"] == "Your flight is confirmed."


def test_a_second_delivery_of_a_sent_text_sends_nothing(app: Flask) -> None:
    queue_message(app, live_session(app))
    [job] = queued_jobs(app)
    with responses.RequestsMock() as rsps:
        mock_created(rsps)
        runtime(app).jobs.deliver(job)
        runtime(app).jobs.deliver(job)
        assert len(rsps.calls) == 1


def test_an_invalid_number_is_recorded_at_once(app: Flask) -> None:
    message = queue_message(app, live_session(app))
    [job] = queued_jobs(app)
    with responses.RequestsMock() as rsps:
        _error(rsps, 400, 21211, "The 'To' number +1415555 is not a valid phone number.")
        assert runtime(app).jobs.deliver(job, final=False) == "failed"  # no retry
        assert len(rsps.calls) == 1
    entry = message_entry(app, message.key)
    assert entry["status"] == "failed" and entry["error_code"] == "21211"
    assert "not a valid phone number" in entry["error"]
    [failed] = stream_events(app, "message_failed")
    assert failed["data"]["error_code"] == "21211"
    with responses.RequestsMock():  # finished with: a redelivery asks Twilio nothing
        assert runtime(app).jobs.deliver(job) == "failed"


def test_the_number_in_twilio_s_refusal_is_masked_wherever_it_is_kept(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    message = queue_message(app, live_session(app))
    [job] = queued_jobs(app)
    with responses.RequestsMock() as rsps:  # Twilio's own sentence names the number
        _error(rsps, 400, 21211, f"The 'To' number {CALLER} is not a valid phone number.")
        assert runtime(app).jobs.deliver(job, final=False) == "failed"
    entry = message_entry(app, message.key)
    assert "not a valid phone number" in entry["error"] and CALLER[-4:] in entry["error"]
    [failed] = stream_events(app, "message_failed")
    kept = [entry["error"], repr(failed["data"]), caplog.text]
    for text in kept:
        assert CALLER not in text and CALLER[1:] not in text, text


def test_an_unsubscribed_recipient_is_recorded_at_once(app: Flask) -> None:
    message = queue_message(app, live_session(app))
    [job] = queued_jobs(app)
    with responses.RequestsMock() as rsps:
        _error(rsps, 400, 21610, "Attempt to send to unsubscribed recipient")
        assert runtime(app).jobs.deliver(job, final=False) == "failed"
    assert message_entry(app, message.key)["error_code"] == "21610"


@pytest.mark.parametrize(
    ("status", "code"), [(429, 20429), (500, 20500), (503, 20503)], ids=["429", "500", "503"]
)
def test_a_transient_error_is_retried_then_sent(app: Flask, status: int, code: int) -> None:
    message = queue_message(app, live_session(app))
    [job] = queued_jobs(app)
    with responses.RequestsMock() as rsps:
        _error(rsps, status, code, "Too many requests" if status == 429 else "Server error")
        with pytest.raises(Transient):
            runtime(app).jobs.deliver(job, final=False)
        assert message_entry(app, message.key)["status"] == "queued"
        rsps.remove(responses.POST, MESSAGES_URL)
        mock_created(rsps)
        assert runtime(app).jobs.deliver(job, final=False) == "sent"
        assert len(rsps.calls) == 2
    assert message_entry(app, message.key)["status"] == "sent"


def test_a_service_exception_is_retried_and_recorded_when_retries_run_out(app: Flask) -> None:
    message = queue_message(app, live_session(app))
    [job] = queued_jobs(app)
    problem = {
        "type": "https://www.twilio.com/docs/errors/20503",
        "title": "Service unavailable",
        "status": 503,
        "code": 20503,
        "detail": "The messaging service is busy.",
    }
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, MESSAGES_URL, json=problem, status=503)
        with pytest.raises(Transient) as caught:
            runtime(app).jobs.deliver(job, final=False)
        assert "The messaging service is busy" in str(caught.value)
        assert runtime(app).jobs.deliver(job, final=True) == "failed"
    entry = message_entry(app, message.key)
    assert entry["status"] == "failed" and entry["error_code"] == "20503"


def test_a_service_exception_that_is_a_refusal_is_recorded_at_once(app: Flask) -> None:
    message = queue_message(app, live_session(app))
    [job] = queued_jobs(app)
    problem = {"type": "about:blank", "title": "Invalid To", "status": 400, "code": 21211}
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, MESSAGES_URL, json=problem, status=400)
        assert runtime(app).jobs.deliver(job, final=False) == "failed"
    assert message_entry(app, message.key)["error_code"] == "21211"


def test_no_connection_to_twilio_is_retried(app: Flask) -> None:
    message = queue_message(app, live_session(app))
    [job] = queued_jobs(app)
    import requests

    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, MESSAGES_URL, body=requests.ConnectionError("refused"))
        with pytest.raises(Transient):
            runtime(app).jobs.deliver(job, final=False)
    assert message_entry(app, message.key)["status"] == "queued"


def test_an_opted_out_number_is_never_texted(app: Flask) -> None:
    engine = database.open_engine(app.config["DATABASE_URL"])
    with database.sessions(engine).begin() as db:
        consents.record(db, CALLER, "sms", "service", False, "STOP", datetime.now(UTC))
    engine.dispose()
    message = queue_message(app, live_session(app))
    [job] = queued_jobs(app)
    with responses.RequestsMock() as rsps:  # any request to Twilio would fail the test
        assert runtime(app).jobs.deliver(job) == "opted_out"
        assert not rsps.calls
    assert message_entry(app, message.key)["status"] == "opted_out"
    [event] = stream_events(app, "message_opted_out")
    assert event["data"]["key"] == message.key


def test_a_send_left_unfinished_is_found_at_twilio_and_not_sent_again(app: Flask) -> None:
    message = queue_message(app, live_session(app))
    [job] = queued_jobs(app)
    jobs = runtime(app).jobs
    jobs.claims.take(message.key, jobs.clock() - 60)  # an attempt whose worker died mid-send
    with responses.RequestsMock() as rsps:  # no POST mocked: a second send would fail
        body = _body_sent(app, job, rsps)
        listing = {
            "messages": [twilio_message("SM" + "9" * 32, CALLER, body)],
            "next_page_uri": None,
        }
        rsps.add(responses.GET, MESSAGES_URL, json=listing)
        assert jobs.deliver(job) == "sent"
        assert [c.request.method for c in rsps.calls] == ["GET"]
        assert parse_qs(urlsplit(rsps.calls[0].request.url).query)["To"] == [CALLER]
    assert message_entry(app, message.key)["sid"] == "SM" + "9" * 32


def test_a_send_left_unfinished_that_twilio_never_got_is_sent(app: Flask) -> None:
    message = queue_message(app, live_session(app))
    [job] = queued_jobs(app)
    jobs = runtime(app).jobs
    jobs.claims.take(message.key, jobs.clock() - 60)
    with responses.RequestsMock() as rsps:
        old = twilio_message("SM" + "8" * 32, CALLER, "Another text", None)
        rsps.add(responses.GET, MESSAGES_URL, json={"messages": [old], "next_page_uri": None})
        mock_created(rsps)
        assert jobs.deliver(job) == "sent"
        assert [c.request.method for c in rsps.calls] == ["GET", "POST"]


def test_a_duplicate_delivered_while_another_sends_waits_for_it(app: Flask) -> None:
    from jobs.outcome import Busy

    message = queue_message(app, live_session(app))
    [job] = queued_jobs(app)
    jobs = runtime(app).jobs
    jobs.claims.take(message.key, jobs.clock())  # another worker is sending it right now
    with responses.RequestsMock() as rsps:  # nothing may reach Twilio
        with pytest.raises(Busy):
            jobs.deliver(job, final=False)
        assert jobs.deliver(job, final=True) == "busy"  # the other attempt records the outcome
        assert not rsps.calls
    assert message_entry(app, message.key)["status"] == "queued"


def _body_sent(app: Flask, job: dict[str, Any], rsps: responses.RequestsMock) -> str:
    """The body the job's text has once its link is filled in (the link's URL is stable)."""
    jobs = runtime(app).jobs
    filled: str = jobs._filled(job, job["body"])
    assert not rsps.calls
    return filled


def test_the_job_in_the_stream_carries_the_real_number_sealed(app: Flask) -> None:
    queue_message(app, live_session(app))
    [event] = stream_events(app, "message_queued")
    data = event["data"]
    assert data["to"] != CALLER and CALLER not in json.dumps(data)  # masked; the job is sealed
    assert "Pick a flight" not in json.dumps(data)
