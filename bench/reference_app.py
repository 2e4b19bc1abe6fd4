"""The framework-free floor the webhook benchmark compares Omnivoice against.

It is the least a signed Twilio gather webhook can do with the standard library and the same
Redis client: parse the form (:func:`urllib.parse.parse_qs`), check ``X-Twilio-Signature`` with
one HMAC-SHA1 over the URL and the sorted parameters (403 when it is wrong), one Redis ``GET`` of
the call's state, one Redis ``SET``, and a constant ``<Gather>`` built once with
``twilio.twiml.voice_response`` at import (only the step number in its action URL changes). No
framework, no flow engine, no session document. It answers ``/voice/answer?step=N`` with a
gather whose action is ``step=N+1`` (and ``/voice`` with ``step=0``), so the load generator drives
it exactly like the real app. Gunicorn serves ``bench.reference_app:app``; ``REDIS_URL``,
``REDIS_KEY_PREFIX`` and ``TWILIO_AUTH_TOKEN`` come from the environment.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import redis
from twilio.twiml.voice_response import VoiceResponse

PROMPT = (
    "For flight status, press 1 or say status. To change a booking, press 2 or say change. "
    "For an agent, press 0 or say agent."
)
TTL = 600

StartResponse = Callable[..., Any]


def gather_twiml(step: str) -> str:
    """The main menu's ``<Gather>`` whose action names ``step``."""
    action = f"/voice/answer?step={step}"
    response = VoiceResponse()
    with response.gather(
        input="dtmf speech",
        action=action,
        method="POST",
        timeout=5,
        num_digits=1,
        speech_timeout="auto",
        hints="status,change,agent",
        language="en-US",
    ) as gather:
        gather.say(PROMPT, language="en-US")
    response.redirect(action, method="POST")
    return str(response)


# Built once: a "%d" in both action URLs (the gather's and the redirect's) takes the step.
_TEMPLATE = gather_twiml("%d").encode("utf-8")


def signature(token: bytes, url: str, form: dict[str, list[str]]) -> str:
    """Twilio's signature of a form POST: one HMAC-SHA1 of the URL and sorted name+value pairs."""
    data = url + "".join(name + value for name in sorted(form) for value in sorted(form[name]))
    return base64.b64encode(hmac.digest(token, data.encode("utf-8"), hashlib.sha1)).decode()


class ReferenceApp:
    """A WSGI callable; the Redis client is made on first use (after gunicorn forks)."""

    def __init__(self) -> None:
        self.prefix = os.environ.get("REDIS_KEY_PREFIX", "bench-reference")
        self.token = os.environ.get("TWILIO_AUTH_TOKEN", "").encode("utf-8")
        self._redis: redis.Redis | None = None

    @property
    def redis(self) -> redis.Redis:
        """The Redis client, with the same short timeouts as the app's."""
        if self._redis is None:
            self._redis = redis.Redis.from_url(
                os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
            )
        return self._redis

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _reply(start_response, b"ok\n", "text/plain")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        form = parse_qs(
            environ["wsgi.input"].read(length).decode("utf-8", "replace"), keep_blank_values=True
        )
        url = f"{environ['wsgi.url_scheme']}://{environ['HTTP_HOST']}{environ['RAW_URI']}"
        given = environ.get("HTTP_X_TWILIO_SIGNATURE", "")
        if not hmac.compare_digest(signature(self.token, url, form), given):
            return _reply(start_response, b"forged\n", "text/plain", "403 Forbidden")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        step = int(query.get("step", ["-1"])[0]) if path == "/voice/answer" else -1
        call_sid = form.get("CallSid", ["unknown"])[0]
        key = f"{self.prefix}:ref:{call_sid}"
        previous = self.redis.get(key)
        state = json.loads(previous) if previous else {"node": "main_menu", "step": -1}
        state["step"] = step + 1
        state["digits"] = form.get("Digits", [""])[0]
        self.redis.set(key, json.dumps(state), ex=TTL)
        return _reply(start_response, _TEMPLATE % (step + 1, step + 1), "text/xml")


def gather_reply(
    connection: redis.Redis, prefix: str, call_sid: str, digits: str, step: int
) -> bytes:
    """What a naive gather webhook does: GET the caller's state, build a <Gather>, SET it back."""
    key = f"{prefix}:ref:{call_sid}"
    previous = connection.get(key)
    state = json.loads(previous) if previous else {"node": "main_menu", "step": -1}
    state["step"] = step + 1
    state["digits"] = digits
    body = gather_twiml(str(step + 1)).encode("utf-8")
    connection.set(key, json.dumps(state), ex=TTL)
    return body


def _reply(
    start_response: StartResponse, body: bytes, mimetype: str, status: str = "200 OK"
) -> list[bytes]:
    start_response(
        status,
        [("Content-Type", f"{mimetype}; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


app = ReferenceApp()
