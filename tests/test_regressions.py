"""Regressions: each test here once failed against the production code."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask

from context.keys import Keys
from context.sessions import SessionStore
from ivr.errors import SessionCorrupt
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_backend import Backend
from tests.support_redis import RoundTrips, counting_client
from tests.support_twilio import CALLER, form, post, prefix_of, spoken, stored, twiml
from tests.test_sessions import _valid_doc


@pytest.fixture
def counted(redis_client: redis.Redis) -> Iterator[tuple[redis.Redis, RoundTrips]]:
    connection, counter = counting_client(redis_client)
    yield connection, counter
    connection.close()


def test_a_resume_by_code_that_loses_its_save_keeps_the_old_session(
    make_app: Callable[..., Flask], flows_dir: object, redis_client: redis.Redis
) -> None:
    flow = flows_dir / "airline.yaml"  # type: ignore[operator]
    flow.write_text(flow.read_text().replace("  ask: true", "  ask: true\n  codes: true"))
    app = make_app()
    first = Call(FlaskTransport(app), AUTH_TOKEN, caller="anonymous").dial()
    first.press("#")
    code = "".join(
        c for c in first.last_heard.split("resume code:")[1].split(".")[0] if c.isdigit()
    )
    first.press("2")
    first.hang_up()
    store = app.extensions["omnivoice.calls"].store
    real_save = store.save
    losses = []

    def lose_once(*args: object, **kwargs: object) -> int | None:
        if not losses:
            losses.append(True)
            return None  # another request won this round
        return real_save(*args, **kwargs)

    second = Call(FlaskTransport(app), AUTH_TOKEN, caller="anonymous").dial()
    store.save = lose_once
    second.press(code)
    assert losses == [True]
    assert "confirmation code" in second.last_heard  # resumed on the retry, not "didn't match"


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
@pytest.mark.parametrize("path", ["/voice", "/voice/answer?step=0", "/voice/status"])
def test_unsigned_non_form_body_is_refused(app: Flask, path: str, content_type: str) -> None:
    response = app.test_client().post(
        path,
        data='{"CallSid": "CA1", "From": "+14155550123"}',
        content_type=content_type,
        headers={"X-Twilio-Signature": "Zm9yZ2Vk"},
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    "changes", [{"step": "three"}, {"no_match_count": "x"}, {"node": 5}, {"call_sid": None}]
)
def test_wrongly_typed_fields_are_corrupt(redis_client: redis.Redis, changes: dict) -> None:
    store = SessionStore(redis_client, Keys(prefix_of(redis_client)), 300)
    key = store.keys.session(CALLER)
    redis_client.hset(key, mapping={"seq": "3", "doc": json.dumps(_valid_doc(**changes))})
    with pytest.raises(SessionCorrupt):
        store.load(CALLER)


@pytest.mark.parametrize("path", ["/voice", "/voice/answer?step=0", "/voice/status"])
def test_non_ascii_signature_is_refused(app: Flask, path: str) -> None:
    response = app.test_client().post(
        path,
        data=form(),
        headers={"X-Twilio-Signature": "signé"},
    )
    assert response.status_code == 403


import time  # noqa: E402

from data_dips.http import HttpFetcher  # noqa: E402
from ivr.turn import HttpRequest  # noqa: E402


def test_trickled_body_is_cut_off_at_the_timeout() -> None:
    backend = Backend()
    fetcher = HttpFetcher()
    try:
        started = time.monotonic()
        result = fetcher.fetch(HttpRequest(url=f"{backend.url}/trickle", timeout=0.5))
        elapsed = time.monotonic() - started
    finally:
        fetcher.session.close()
        backend.close()
    assert not result.ok
    assert elapsed < 1.5, elapsed


def test_local_body_over_a_custom_limit_is_refused_not_truncated() -> None:
    from flask import Flask, Response

    app = Flask("x")

    @app.get("/n")
    def n() -> Response:
        return Response("1234567890123", mimetype="application/json")

    fetcher = HttpFetcher(local_app=app, max_bytes=10)
    result = fetcher.fetch(HttpRequest(url="/n"))
    fetcher.session.close()
    assert not result.ok, result


def test_a_larger_size_limit_is_honoured() -> None:
    backend = Backend()
    fetcher = HttpFetcher(max_bytes=1024 * 1024)
    try:
        result = fetcher.fetch(HttpRequest(url=f"{backend.url}/large"))
    finally:
        fetcher.session.close()
        backend.close()
    assert result.ok, result.error


ECHO_NUMBER = "+14155550143"
ECHO_FLOW = """
id: echo
numbers: ["{number}"]
start: ask
nodes:
  ask:
    gather: {{prompt: Say something., input: [speech]}}
    save_as: said
    next: lookup
  lookup:
    http: {{url: "{url}", timeout: 2s, save_as: customer}}
    on_error: unavailable
    gather:
      prompt: "You said {{{{ said }}}}. Hello {{{{ customer.name }}}}. Press 1 to end."
    on:
      "1": goodbye
  goodbye:
    say: Goodbye.
    hangup: true
  unavailable:
    say: Our records are unavailable.
    hangup: true
"""


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.close()


def test_speech_and_data_xml_cannot_carry_still_make_twiml_that_parses(
    make_app: Callable[..., Flask], flows_dir: Path, backend: Backend, redis_client: redis.Redis
) -> None:
    flow = ECHO_FLOW.format(number=ECHO_NUMBER, url=f"{backend.url}/not-xml")
    (flows_dir / "echo.yaml").write_text(flow)
    client = make_app().test_client()
    call = form(To=ECHO_NUMBER)
    gather = twiml(post(client, "/voice", call)).find("Gather")
    assert gather is not None
    # Speech with NUL and ESC (percent-encoded in the signed form), a data dip's JSON with NUL,
    # ESC, a lone surrogate and U+FFFF: all of it reaches one <Say>.
    speech = "flight\x00 status\x1b now"
    reply = post(client, gather.get("action", ""), {**call, "SpeechResult": speech})
    root = twiml(reply)  # parses
    assert spoken(root) == ["You said flight status now. Hello Ada Lovelace. Press 1 to end."]
    assert stored(redis_client).doc["variables"]["said"] == speech  # kept as the caller said it
    gather = root.find("Gather")
    assert gather is not None
    goodbye = twiml(post(client, gather.get("action", ""), {**call, "Digits": "1"}))
    assert spoken(goodbye) == ["Goodbye."]
