"""The voice webhooks over HTTP on real Redis: odd calls, retried webhooks, status callbacks, outages.

Twilio may post a webhook twice, post for a call Omnivoice never saw, or keep talking to a call
that a newer call from the same caller has replaced. None of these may advance a flow twice,
overwrite a newer call's session or reach the caller as an HTTP error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_twilio import (
    form,
    free_port,
    keys_under,
    post,
    spoken,
    stored,
    twiml,
    verbs,
)

MAIN_MENU = "For flight status, press 1"
WELCOME = "Thanks for calling Omnivoice Air."
FALLBACK = "+14155550999"


def dial(app: Flask, **kwargs: Any) -> Call:
    return Call(FlaskTransport(app), AUTH_TOKEN, **kwargs).dial()


def action_of(call: Call) -> str:
    assert call.gather is not None, "the call is not at a gather"
    return call.gather.get("action", "")


# ---- calls Omnivoice does not know --------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/voice/answer?step=0", {"Digits": "1"}),
        ("/voice/answer?step=7", {}),
        ("/voice/answer?step=3", {"SpeechResult": "agent", "Confidence": "0.9"}),
        ("/voice/answer", {"Digits": "2"}),  # no step at all
        ("/voice/answer?step=first", {"Digits": "2"}),  # a step that is not a number
    ],
)
def test_unknown_call_on_answer_restarts_the_flow(
    client: FlaskClient, redis_client: redis.Redis, path: str, fields: dict[str, str]
) -> None:
    params = form("CA" + "7" * 32, **fields)
    root = twiml(post(client, path, params))
    gather = root.find("Gather")
    assert gather is not None
    assert any(MAIN_MENU in text for text in spoken(gather))
    assert spoken(root)[0] == WELCOME
    assert "Hangup" not in verbs(root)
    session = stored(redis_client)
    assert session.call == params["CallSid"]
    assert session.doc["node"] == "main_menu"


@pytest.fixture
def takeover_app(make_app: Callable[..., Flask], flows_dir: Path) -> Flask:
    """The demo flow with ``concurrent: takeover``: a new call from a number takes its session."""
    path = flows_dir / "airline.yaml"
    path.write_text(path.read_text().replace("  ask: true", "  ask: true\n  concurrent: takeover"))
    return make_app()


def test_answer_for_a_call_replaced_by_a_newer_one_hangs_up_and_changes_nothing(
    takeover_app: Flask, redis_client: redis.Redis
) -> None:
    app = takeover_app
    older = dial(app, call_sid="CA" + "a" * 32)
    older_action = action_of(older)
    newer = dial(app, call_sid="CA" + "b" * 32)  # same caller, a fast redial
    before = stored(redis_client)
    assert before.call == newer.call_sid
    keys_before = keys_under(redis_client)

    root = twiml(post(app.test_client(), older_action, form(older.call_sid, Digits="1")))
    assert verbs(root)[-1] == "Hangup"
    assert root.find("Gather") is None
    assert any("continuing on another line" in text for text in spoken(root))
    after = stored(redis_client)
    assert (after.seq, after.call, after.raw) == (before.seq, before.call, before.raw)
    assert keys_under(redis_client) == keys_before  # no reply cached for the fenced call


def test_status_callback_of_a_replaced_call_changes_nothing(
    takeover_app: Flask, redis_client: redis.Redis
) -> None:
    app = takeover_app
    older = dial(app, call_sid="CA" + "a" * 32)
    dial(app, call_sid="CA" + "b" * 32)
    before = stored(redis_client)
    assert older.status_callback("completed") == 204
    after = stored(redis_client)
    assert (after.seq, after.raw) == (before.seq, before.raw)


# ---- retried webhooks ---------------------------------------------------------------------
def test_retried_answer_gets_the_same_twiml_and_advances_once(
    app: Flask, redis_client: redis.Redis
) -> None:
    call = dial(app)
    action = action_of(call)
    start = stored(redis_client)
    client = app.test_client()
    params = form(call.call_sid, Digits="1")

    first = post(client, action, params)
    after_first = stored(redis_client)
    second = post(client, action, params)
    after_second = stored(redis_client)

    assert first.get_data() == second.get_data()
    assert any("confirmation code" in text for text in spoken(twiml(second)))
    assert after_first.seq == start.seq + 1
    assert after_first.doc["step"] == start.doc["step"] + 1
    assert after_first.doc["node"] == "confirmation"
    assert after_second.seq == after_first.seq
    assert after_second.doc["step"] == after_first.doc["step"]


def test_late_retry_of_an_earlier_step_replays_its_reply(
    app: Flask, redis_client: redis.Redis
) -> None:
    call = dial(app)
    first_action = action_of(call)
    call.press("1")
    first_reply = call.responses[-1]
    call.press("9")  # a no-match at the confirmation code: the call moved on
    moved_on = stored(redis_client)

    retry = twiml(post(app.test_client(), first_action, form(call.call_sid, Digits="1")))
    assert spoken(retry) == spoken(first_reply)
    after = stored(redis_client)
    assert (after.seq, after.raw) == (moved_on.seq, moved_on.raw)


def test_retried_incoming_webhook_gets_the_same_twiml_and_starts_once(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    params = form()
    first = post(client, "/voice", params)
    after_first = stored(redis_client)
    second = post(client, "/voice", params)
    assert first.get_data() == second.get_data()
    assert twiml(second).find("Gather") is not None
    after_second = stored(redis_client)
    assert after_first.seq == after_second.seq == 1
    assert after_second.raw == after_first.raw


# ---- status callbacks ---------------------------------------------------------------------
def test_status_callback_for_an_unknown_call_stores_nothing(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    response = post(client, "/voice/status", form(CallStatus="completed", CallDuration="12"))
    assert response.status_code == 204
    assert response.get_data() == b""
    assert keys_under(redis_client) == []


def test_status_callback_for_an_unknown_call_of_a_known_caller_changes_nothing(
    app: Flask, redis_client: redis.Redis
) -> None:
    dial(app)
    before = stored(redis_client)
    response = post(
        app.test_client(), "/voice/status", form("CA" + "9" * 32, CallStatus="completed")
    )
    assert response.status_code == 204
    after = stored(redis_client)
    assert (after.seq, after.raw) == (before.seq, before.raw)


@pytest.mark.parametrize("status", ["completed", "busy", "failed", "no-answer", "canceled"])
def test_two_status_callbacks_make_one_transition(
    app: Flask, redis_client: redis.Redis, status: str
) -> None:
    call = dial(app)
    before = stored(redis_client)
    assert call.status_callback(status) == 204
    once = stored(redis_client)
    assert call.status_callback(status) == 204
    assert call.status_callback("completed") == 204  # a late, different terminal status
    twice = stored(redis_client)
    assert once.seq == before.seq + 1
    assert once.doc["status"] == "interrupted"
    assert once.doc["call_status"] == status
    assert (twice.seq, twice.raw) == (once.seq, once.raw)


@pytest.mark.parametrize("status", ["queued", "initiated", "ringing", "in-progress", ""])
def test_non_terminal_status_changes_nothing(
    app: Flask, redis_client: redis.Redis, status: str
) -> None:
    call = dial(app)
    before = stored(redis_client)
    assert call.status_callback(status) == 204
    after = stored(redis_client)
    assert (after.seq, after.raw) == (before.seq, before.raw)
    assert after.doc["status"] == "active"


# ---- Redis is down ------------------------------------------------------------------------
def dead_redis() -> redis.Redis:
    """A client for a port nothing listens on.

    redis-py's default client retries a refused connection three times with a backoff of about
    a second each; a second ``retry`` argument keeps each request to one quick attempt.
    """
    return redis.Redis(
        port=free_port(),
        socket_timeout=0.2,
        socket_connect_timeout=0.2,
        retry=Retry(NoBackoff(), 0),
    )


@pytest.fixture
def outage_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(REDIS_CLIENT=dead_redis(), FALLBACK_NUMBER=FALLBACK)


@pytest.mark.parametrize(
    ("path", "fields"),
    [("/voice", {}), ("/voice/answer?step=2", {"Digits": "1"}), ("/voice/answer", {})],
)
def test_redis_down_apologises_and_dials_the_fallback(
    outage_app: Flask, path: str, fields: dict[str, str]
) -> None:
    root = twiml(post(outage_app.test_client(), path, form(**fields)))
    says = spoken(root)
    assert says[0].startswith("Sorry")
    dial_verb = root.find("Dial")
    assert dial_verb is not None and (dial_verb.text or "").strip() == FALLBACK
    assert root.find("Gather") is None


def test_redis_down_status_callback_is_acknowledged(outage_app: Flask) -> None:
    response = post(outage_app.test_client(), "/voice/status", form(CallStatus="completed"))
    assert response.status_code == 204


def test_redis_down_without_fallback_number_says_goodbye(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(REDIS_CLIENT=dead_redis(), FALLBACK_NUMBER=None, FALLBACK_QUEUE=None)
    root = twiml(post(app.test_client(), "/voice", form()))
    assert verbs(root) == ["Say", "Say", "Hangup"]
    assert spoken(root)[0].startswith("Sorry")


def test_redis_down_with_fallback_queue_enqueues(make_app: Callable[..., Flask]) -> None:
    app = make_app(REDIS_CLIENT=dead_redis(), FALLBACK_NUMBER=None, FALLBACK_QUEUE="support")
    root = twiml(post(app.test_client(), "/voice", form()))
    enqueue = root.find("Enqueue")
    assert enqueue is not None and enqueue.text == "support"


def test_redis_url_to_a_dead_server_fails_fast(make_app: Callable[..., Flask]) -> None:
    """The client built from REDIS_URL (not a test double) gives up well within Twilio's 15 s."""
    app = make_app(
        REDIS_CLIENT=None,
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        REDIS_TIMEOUT=0.2,
        FALLBACK_NUMBER=FALLBACK,
    )
    client = app.test_client()
    started = time.monotonic()
    root = twiml(post(client, "/voice", form()))
    assert post(client, "/voice/status", form(CallStatus="completed")).status_code == 204
    assert time.monotonic() - started < 2.0
    assert root.find("Dial") is not None
    assert client.get("/healthz").status_code == 503


def test_healthz_reports_a_working_store(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert "flows: ok: 1 flow(s) serving" in response.get_data(as_text=True)
