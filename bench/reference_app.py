"""The reference WSGI app the webhook benchmark compares Omnivoice against.

It is the least a Twilio gather webhook can do with the same tools: parse the form, one Redis
``GET`` of the caller's state, build a ``<Gather>`` with ``twilio.twiml.voice_response``, one Redis
``SET``. No framework, no signature check, no flow engine. It answers
``/voice/answer?step=N`` with a gather whose action is ``step=N+1`` (and ``/voice`` with
``step=0``), so the load generator drives it exactly like the real app. Gunicorn serves
``bench.reference_app:app``; ``REDIS_URL`` and ``REDIS_KEY_PREFIX`` come from the environment.
"""

from __future__ import annotations

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


class ReferenceApp:
    """A WSGI callable; the Redis client is made on first use (after gunicorn forks)."""

    def __init__(self) -> None:
        self.prefix = os.environ.get("REDIS_KEY_PREFIX", "bench-reference")
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
        form = parse_qs(environ["wsgi.input"].read(length).decode("utf-8", "replace"))
        query = parse_qs(environ.get("QUERY_STRING", ""))
        step = int(query.get("step", ["-1"])[0]) if path == "/voice/answer" else -1
        call_sid = form.get("CallSid", ["unknown"])[0]
        digits = form.get("Digits", [""])[0]
        body = gather_reply(self.redis, self.prefix, call_sid, digits, step)
        return _reply(start_response, body, "text/xml")


def gather_reply(
    connection: redis.Redis, prefix: str, call_sid: str, digits: str, step: int
) -> bytes:
    """What a naive gather webhook does: GET the caller's state, build a <Gather>, SET it back."""
    key = f"{prefix}:ref:{call_sid}"
    previous = connection.get(key)
    state = json.loads(previous) if previous else {"node": "main_menu", "step": -1}
    state["step"] = step + 1
    state["digits"] = digits
    action = f"/voice/answer?step={step + 1}"
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
    connection.set(key, json.dumps(state), ex=TTL)
    return str(response).encode("utf-8")


def _reply(start_response: StartResponse, body: bytes, mimetype: str) -> list[bytes]:
    start_response(
        "200 OK",
        [("Content-Type", f"{mimetype}; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


app = ReferenceApp()
