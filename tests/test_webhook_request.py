"""Reading webhooks straight from WSGI (webhooks.request) and serving them in front of Flask.

The form decoder must read every body exactly as the standard library (and so werkzeug) does,
the URL must be the one Twilio signed, and requests Twilio would never send get a clear 4xx that
stores nothing.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
import redis
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import on_topologies
from tests.support_twilio import form, keys_under, post, sign, stored, twiml
from webhooks.request import MAX_BODY_BYTES, MAX_PARAMETERS, parse_pairs, public_url, read

_PIECES = st.text(st.sampled_from(list("ab=&+%20%zZ%e2%82%ac;é ")), max_size=40)
# numbers as Twilio sends them (%2B for the +), and what only looks like one
_NUMBERS = st.lists(
    st.sampled_from(["From=", "%2B", "%2b", "%2", "1415", "=", "&", "%", "+", "%20", "B"]),
    max_size=12,
).map("".join)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(text=st.one_of(_PIECES, _NUMBERS, st.text(max_size=40)))
def test_the_form_decoder_reads_what_parse_qsl_reads(text: str) -> None:
    expected: dict[str, list[str]] = {}
    for name, value in parse_qsl(text, keep_blank_values=True, errors="replace"):
        expected.setdefault(name, []).append(value)
    assert parse_pairs(text) == expected


def test_repeated_fields_keep_every_value_in_order() -> None:
    assert parse_pairs("a=1&b=2&a=3&c&a=") == {"a": ["1", "3", ""], "b": ["2"], "c": [""]}


def _environ(body: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/voice",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_TYPE": "application/x-www-form-urlencoded; charset=utf-8",
        "CONTENT_LENGTH": str(len(body)),
        **extra,
    }


def test_a_body_without_a_length_is_read_only_when_the_server_marks_its_end() -> None:
    body = b"CallSid=CA1&Digits=5"
    unterminated = read(_environ(body, CONTENT_LENGTH=""))
    assert unterminated.form == {}
    terminated = read(_environ(body, CONTENT_LENGTH="", **{"wsgi.input_terminated": True}))
    assert terminated.fields() == {"CallSid": "CA1", "Digits": "5"}


@pytest.mark.parametrize(
    ("extra", "url"),
    [
        ({"HTTP_HOST": "example.com:80"}, "http://example.com/voice?step=2"),
        ({"HTTP_HOST": "example.com:8080"}, "http://example.com:8080/voice?step=2"),
        ({"wsgi.url_scheme": "https", "HTTP_HOST": "example.com:443"}, "https://example.com/voice?step=2"),
        ({}, "http://localhost/voice?step=2"),
        ({"SERVER_PORT": "5000"}, "http://localhost:5000/voice?step=2"),
    ],
)  # fmt: skip
def test_the_signed_url_is_the_one_requested(extra: dict[str, Any], url: str) -> None:
    environ = _environ(b"", QUERY_STRING="step=2", **extra)
    assert public_url(environ) == url


def test_the_raw_request_target_keeps_its_escapes() -> None:
    environ = _environ(b"", RAW_URI="/voice?x=a%28b%29", QUERY_STRING="x=a(b)")
    assert public_url(environ) == "http://localhost/voice?x=a%28b%29"
    assert public_url(environ, "https://voice.example.com/") == (
        "https://voice.example.com/voice?x=a%28b%29"
    )


def test_an_oversized_body_is_a_413_and_stores_nothing(
    app: Flask, redis_client: redis.Redis
) -> None:
    params = form(SpeechResult="x" * MAX_BODY_BYTES)
    reply = post(app.test_client(), "/voice", params)
    assert reply.status_code == 413
    assert keys_under(redis_client) == []


# ---- how many parameters ------------------------------------------------------------------
# An inbound call's webhook as Twilio posts it, geographic fields and all: 27 parameters.
INBOUND_CALL = {
    **form(),
    "CallToken": "%7B%22parentCallInfoToken%22%3A%22eyJhbGciOiJFUzI1NiJ9%22%7D",
    "Called": "+14155550100", "CalledCity": "SAN FRANCISCO", "CalledCountry": "US",
    "CalledState": "CA", "CalledZip": "94105",
    "Caller": "+14155550123", "CallerCity": "OAKLAND", "CallerCountry": "US",
    "CallerState": "CA", "CallerZip": "94612",
    "FromCity": "OAKLAND", "FromCountry": "US", "FromState": "CA", "FromZip": "94612",
    "StirVerstat": "TN-Validation-Passed-A",
    "ToCity": "SAN FRANCISCO", "ToCountry": "US", "ToState": "CA", "ToZip": "94105",
}  # fmt: skip


def padded(count: int) -> dict[str, str]:
    """The inbound call's form with parameters added until it has ``count``."""
    extra = {f"{n:x}": "" for n in range(count - len(INBOUND_CALL))}  # short: under 64 KiB
    return {**INBOUND_CALL, **extra}


def test_twilio_s_full_inbound_form_is_answered_as_ever(
    app: Flask, redis_client: redis.Redis
) -> None:
    assert len(INBOUND_CALL) == 27
    root = twiml(post(app.test_client(), "/voice", INBOUND_CALL))
    assert root.find("Gather") is not None
    assert stored(redis_client).call == INBOUND_CALL["CallSid"]


@on_topologies("single")  # refused before the store is ever asked
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("path", ["/voice", "/voice/answer?step=1", "/voice/status"])
@pytest.mark.parametrize("count", [MAX_PARAMETERS + 1, 10_000])
def test_more_parameters_than_the_cap_are_a_413_before_any_signature_work(
    app: Flask, redis_client: redis.Redis, signed: bool, path: str, count: int
) -> None:
    params = padded(count)
    headers = {"X-Twilio-Signature": sign(f"http://localhost{path}", params) if signed else "x"}
    reply = app.test_client().post(path, data=params, headers=headers)
    # Unsigned, a check after the signature's would have answered 403.
    assert reply.status_code == 413
    assert reply.mimetype == "text/plain"
    assert f"{count} parameters, over the {MAX_PARAMETERS} allowed" in reply.get_data(as_text=True)
    assert keys_under(redis_client) == []


def test_the_cap_itself_is_served(app: Flask, redis_client: redis.Redis) -> None:
    root = twiml(post(app.test_client(), "/voice", padded(MAX_PARAMETERS)))
    assert root.find("Gather") is not None
    assert stored(redis_client).call == INBOUND_CALL["CallSid"]


@on_topologies("single")
def test_a_query_over_the_cap_is_a_413_too(app: Flask, redis_client: redis.Redis) -> None:
    path = "/voice/answer?step=1&" + "&".join(f"q{n}=1" for n in range(MAX_PARAMETERS))
    reply = post(app.test_client(), path, INBOUND_CALL)
    assert reply.status_code == 413
    assert "query" in reply.get_data(as_text=True)
    assert keys_under(redis_client) == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_a_405_naming_post(app: Flask, method: str) -> None:
    reply = app.test_client().open("/voice/answer?step=0", method=method)
    assert reply.status_code == 405
    assert reply.headers["Allow"] == "POST"


def test_a_mounted_app_signs_and_answers_under_its_mount(
    make_app: Callable[..., Flask], redis_client: redis.Redis
) -> None:
    client = make_app().test_client()
    params = form()
    url = "http://localhost/ivr/voice"
    body = urlencode(params)
    reply = client.post(
        "/ivr/voice",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": sign(url, params)},
        environ_overrides={"SCRIPT_NAME": "/ivr", "PATH_INFO": "/voice", "RAW_URI": "/ivr/voice"},
    )
    assert reply.status_code == 200
    gather = ET.fromstring(reply.get_data()).find("Gather")
    assert gather is not None
    assert gather.get("action", "").startswith("/ivr/voice/answer?step=")


def test_other_paths_still_reach_flask(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.post("/voice/elsewhere").status_code == 404
