"""Twilio request validation on every Twilio-facing endpoint (real Redis, Flask client).

A forged request must be refused with 403 and must not touch Redis; a request signed the way
Twilio signs it (URL as Twilio requested it, sorted form parameters, the account's auth token)
must be served. Each test first places a live call, so an accepted forgery would visibly change
the stored session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_twilio import LOCAL, form, keys_under, post, sign, stored, twiml
from webhooks.signature import compute_signature

PUBLIC = "https://voice.example.com"


@dataclass(frozen=True)
class Endpoint:
    """One Twilio-facing endpoint and a request to it that would change the stored session."""

    name: str
    path: str  # "{step}" is the step of the live call's pending gather
    fields: dict[str, str]
    ok_status: int
    other_path: str  # a different endpoint, to sign the wrong URL


ENDPOINTS = [
    # A new call from the same caller: accepted, it would take the session over.
    Endpoint("incoming", "/voice", {"CallSid": "CA" + "2" * 32}, 200, "/voice/status"),
    # The live call's answer: accepted, it would advance the session.
    Endpoint("answer", "/voice/answer?step={step}", {"Digits": "1"}, 200, "/voice/answer?step=99"),
    # The live call ended: accepted, it would mark the session interrupted.
    Endpoint("status", "/voice/status", {"CallStatus": "completed"}, 204, "/voice"),
]


def _live_call(app: Flask) -> Call:
    call = Call(FlaskTransport(app), AUTH_TOKEN, call_sid="CA" + "1" * 32).dial()
    assert call.gather is not None
    return call


def _path(endpoint: Endpoint, call: Call) -> str:
    action = call.gather.get("action", "") if call.gather is not None else ""
    step = action.rsplit("=", 1)[-1]
    return endpoint.path.format(step=step)


def _snapshot(connection: redis.Redis) -> dict[str, Any]:
    """Every key under the test's prefix with its value."""
    values: dict[str, Any] = {}
    for key in keys_under(connection):
        kind = connection.type(key)
        if kind == b"hash":
            values[key] = connection.hgetall(key)
        elif kind == b"stream":
            values[key] = connection.xrange(key)
        else:
            values[key] = connection.get(key)
    return values


def _forge(
    kind: str, url: str, other_url: str, params: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """A forged request of ``kind`` to ``url``: the form posted and its headers."""
    if kind == "no signature":
        return params, {}
    if kind == "wrong signature":
        return params, {"X-Twilio-Signature": "c2lnbmVkIGJ5IG5vYm9keSBhdCBhbGw="}
    if kind == "empty signature":
        return params, {"X-Twilio-Signature": ""}
    if kind == "signed for another URL":
        return params, {"X-Twilio-Signature": sign(other_url, params)}
    if kind == "params altered after signing":
        signature = sign(url, params)
        return {**params, "From": "+14155550999"}, {"X-Twilio-Signature": signature}
    if kind == "param added after signing":
        signature = sign(url, params)
        return {**params, "SpeechResult": "agent"}, {"X-Twilio-Signature": signature}
    if kind == "another auth token":
        return params, {"X-Twilio-Signature": sign(url, params, "some-other-account-token")}
    raise AssertionError(kind)


FORGERIES = [
    "no signature",
    "wrong signature",
    "empty signature",
    "signed for another URL",
    "params altered after signing",
    "param added after signing",
    "another auth token",
]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@pytest.mark.parametrize("forgery", FORGERIES)
def test_forged_requests_are_refused_and_change_nothing(
    app: Flask, redis_client: redis.Redis, endpoint: Endpoint, forgery: str
) -> None:
    call = _live_call(app)
    before = _snapshot(redis_client)
    path = _path(endpoint, call)
    params = form(call.call_sid, **endpoint.fields)
    posted, headers = _forge(forgery, LOCAL + path, LOCAL + endpoint.other_path, params)
    response = app.test_client().post(path, data=posted, headers=headers)
    assert response.status_code == 403
    assert b"<Response" not in response.get_data()
    assert _snapshot(redis_client) == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_signed_requests_are_served(
    app: Flask, redis_client: redis.Redis, endpoint: Endpoint
) -> None:
    call = _live_call(app)
    before = stored(redis_client)
    response = post(
        app.test_client(), _path(endpoint, call), form(call.call_sid, **endpoint.fields)
    )
    assert response.status_code == endpoint.ok_status
    if endpoint.ok_status == 200:
        twiml(response)
    after = stored(redis_client)
    assert after.seq == before.seq + 1  # the same request, forged, changed nothing


@pytest.fixture
def public_client(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app(PUBLIC_BASE_URL=PUBLIC).test_client()


@pytest.mark.parametrize(
    ("path", "signed_for"),
    [
        ("/voice", f"{PUBLIC}/voice"),
        ("/voice", f"{PUBLIC}:443/voice"),  # Twilio may sign with the default port
        ("/voice/answer?step=0", f"{PUBLIC}/voice/answer?step=0"),
    ],
)
def test_public_base_url_is_what_twilio_signed(
    public_client: FlaskClient, redis_client: redis.Redis, path: str, signed_for: str
) -> None:
    root = twiml(post(public_client, path, form(), signed_url=signed_for))
    assert root.find("Gather") is not None
    assert stored(redis_client).seq == 1


@pytest.mark.parametrize(
    "signed_for",
    [
        f"{LOCAL}/voice",  # the URL the server saw, not the one Twilio requested
        "http://voice.example.com/voice",  # scheme differs
        f"{PUBLIC}/voice/",  # path differs
    ],
)
def test_public_base_url_refuses_other_urls(
    public_client: FlaskClient, redis_client: redis.Redis, signed_for: str
) -> None:
    response = post(public_client, "/voice", form(), signed_url=signed_for)
    assert response.status_code == 403
    assert keys_under(redis_client) == []


def test_public_base_url_with_trailing_slash(
    make_app: Callable[..., Flask], redis_client: redis.Redis
) -> None:
    client = make_app(PUBLIC_BASE_URL=PUBLIC + "/").test_client()
    root = twiml(post(client, "/voice", form(), signed_url=f"{PUBLIC}/voice"))
    assert root.find("Gather") is not None


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "voice.example.com"}


def test_trusted_proxy_headers_rebuild_the_signed_url(
    make_app: Callable[..., Flask], redis_client: redis.Redis
) -> None:
    client = make_app(TRUST_PROXY=1).test_client()
    response = post(client, "/voice", form(), signed_url=f"{PUBLIC}/voice", headers=FORWARDED)
    assert twiml(response).find("Gather") is not None
    gone = post(client, "/voice", form(), signed_url=f"{LOCAL}/voice", headers=FORWARDED)
    assert gone.status_code == 403


def test_proxy_headers_are_ignored_unless_trusted(app: Flask, redis_client: redis.Redis) -> None:
    client = app.test_client()
    response = post(client, "/voice", form(), signed_url=f"{PUBLIC}/voice", headers=FORWARDED)
    assert response.status_code == 403
    assert keys_under(redis_client) == []


def test_dev_mode_skips_the_check_and_warns_on_every_request(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_app(DEV_MODE=True).test_client()
    with caplog.at_level(logging.WARNING, logger="webhooks.signature"):
        incoming = client.post("/voice", data=form())
        answer = client.post("/voice/answer?step=0", data=form(Digits="1"))
        status = client.post("/voice/status", data=form(CallStatus="completed"))
    assert twiml(incoming).find("Gather") is not None
    assert twiml(answer).find("Gather") is not None
    assert status.status_code == 204
    warnings = [
        r
        for r in caplog.records
        if r.name == "webhooks.signature" and r.levelno == logging.WARNING
        and "DEV MODE" in r.getMessage()
    ]  # fmt: skip
    assert [r.getMessage().rsplit(" ", 1)[-1] for r in warnings] == [
        "/voice",
        "/voice/answer",
        "/voice/status",
    ]


@pytest.mark.parametrize("token", [None, ""])
def test_no_auth_token_refuses_everything(
    make_app: Callable[..., Flask],
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    token: str | None,
) -> None:
    client = make_app(TWILIO_AUTH_TOKEN=token).test_client()
    paths = ["/voice", "/voice/answer?step=0", "/voice/status"]
    with caplog.at_level(logging.ERROR, logger="webhooks.signature"):
        for path in paths:
            # Signed with the token the server should have had, and with an empty one.
            assert post(client, path, form(Digits="1")).status_code == 403, path
            assert post(client, path, form(Digits="1"), token="").status_code == 403, path
    assert keys_under(redis_client) == []
    explained = [r for r in caplog.records if "TWILIO_AUTH_TOKEN is not set" in r.getMessage()]
    assert len(explained) == 2 * len(paths)


_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    url=st.sampled_from(
        ["https://voice.example.com/voice", "http://localhost/voice/answer?step=3"]
    ),
    pairs=st.lists(st.tuples(_names, _names), max_size=12),
    algorithm=st.sampled_from(["HMAC_SHA1", "HMAC_SHA256", "hmac_sha1"]),
)
def test_the_fast_signature_is_twilios(
    url: str, pairs: list[tuple[str, str]], algorithm: str
) -> None:
    # Repeated names, unicode and empty values sign exactly as the twilio SDK signs them.
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    expected = RequestValidator(AUTH_TOKEN).compute_signature(url, MultiDict(pairs), algorithm)
    assert compute_signature(AUTH_TOKEN, url, form, algorithm) == expected


def test_an_unknown_signature_algorithm_is_refused(app: Flask, redis_client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        compute_signature(AUTH_TOKEN, "https://x", {}, "HMAC_MD5")
    client = app.test_client()
    params = form(Digits="1")
    headers = {"X-Twilio-Webhooks-Signature-Settings": "key=k,algorithm=HMAC_MD5"}
    reply = post(client, "/voice", params, headers=headers)
    assert reply.status_code == 403
    assert keys_under(redis_client) == []
