"""The naive Flask gather webhook the benchmark also measures Omnivoice against.

The same work as :mod:`bench.reference_app` (one Redis ``GET``, a ``<Gather>`` built with
``twilio.twiml.voice_response``, one Redis ``SET``), written the way Twilio's own Flask samples
write a webhook: one view per URL, ``request.form``, no signature check, no flow engine. It runs
on the framework Omnivoice runs on, so the ratio against it measures what the flow engine,
signature check and session store cost (or save) over hand-written code; the bare WSGI reference
is the floor without any framework. Gunicorn serves ``bench.reference_flask:app``.
"""

from __future__ import annotations

import os

import redis
from flask import Flask, Response, request

from bench.reference_app import gather_reply

app = Flask(__name__)
_PREFIX = os.environ.get("REDIS_KEY_PREFIX", "bench-reference")
_connection: list[redis.Redis] = []  # made on first use, after gunicorn forks


def _redis() -> redis.Redis:
    if not _connection:
        _connection.append(
            redis.Redis.from_url(
                os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
            )
        )
    return _connection[0]


@app.get("/healthz")
def healthz() -> str:
    """Ready."""
    return "ok\n"


@app.post("/voice")
def incoming() -> Response:
    """A new call: the main menu."""
    return _gather(-1)


@app.post("/voice/answer")
def answer() -> Response:
    """An answer: the main menu again, one step on."""
    return _gather(request.args.get("step", default=-1, type=int))


def _gather(step: int) -> Response:
    body = gather_reply(
        _redis(),
        _PREFIX,
        request.form.get("CallSid", "unknown"),
        request.form.get("Digits", ""),
        step,
    )
    return Response(body, mimetype="text/xml")
