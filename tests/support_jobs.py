"""Helpers for the job queue's tests: an app that sends, a message queued on a live session,
the jobs the relay would carry, and Twilio's Messages API as ``responses`` mocks it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import responses
from dramatiq.brokers.stub import StubBroker
from flask import Flask
from twilio.rest import Client

from context.history import database
from conversation.message_jobs import open_job
from ivr import links, messages
from ivr.session import Session
from ivr.turn import PageLink, SendMessage
from jobs.relay import OutboxRelay
from jobs.runtime import JobsRuntime
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN

ACCOUNT = "AC" + "a" * 32
MESSAGES_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
FROM_NUMBER = "+14155550100"
CALLER = "+14155550123"
BASE = "https://ov.example.com"


def history_url(tmp_path: Path) -> str:
    """A migrated SQLite history database in ``tmp_path``."""
    url = f"sqlite:///{tmp_path / 'history.db'}"
    engine = database.open_engine(url)
    database.upgrade(engine)
    engine.dispose()
    return url


def sending_app(make_app: Callable[..., Flask], tmp_path: Path, **overrides: Any) -> Flask:
    """An app that texts through the real SDK (its HTTP mocked by ``responses``), on an
    in-memory broker unless ``overrides`` name another."""
    config: dict[str, Any] = {
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        "TWILIO_CLIENT": Client(ACCOUNT, AUTH_TOKEN),
        "TWILIO_PHONE_NUMBER": FROM_NUMBER,
        "PUBLIC_BASE_URL": BASE,
        "DATABASE_URL": history_url(tmp_path),
        "QUEUE_BROKER": StubBroker(),
        "JOBS_RETRY": {"max_retries": 2, "min_backoff_ms": 10, "max_backoff_ms": 50},
        **overrides,
    }
    return make_app(**config)


def runtime(app: Flask) -> JobsRuntime:
    """The app's job queue."""
    jobs: JobsRuntime = app.extensions["omnivoice.jobs"]
    return jobs


def live_session(app: Flask, caller: str = CALLER) -> Call:
    """A call in progress from ``caller`` (its session saved)."""
    return Call(FlaskTransport(app), AUTH_TOKEN, caller=caller, base_url=BASE).dial()


def queue_message(
    app: Flask,
    call: Call,
    *,
    channel: str = "sms",
    to: str = CALLER,
    body: str | None = None,
    subject: str | None = None,
    html: str | None = None,
    page: str | None = "flights",
    node: str = "offer_link",
) -> SendMessage:
    """Queue a message on ``call``'s session the way a flow does (saved with its event)."""
    link = links.link_id(call.call_sid, 7, node, page) if page else None
    page_links = (PageLink(link, page, 900),) if link and page else ()
    text = body if body is not None else "Pick a flight: " + (links.mark(link) if link else "")
    message = SendMessage(
        key=messages.message_key(call.call_sid, 7, node, channel),
        channel=channel,  # type: ignore[arg-type]
        to=to,
        body=text,
        node=node,
        subject=subject,
        html=html,
        links=page_links,
    )

    def change(session: Session, now: float) -> tuple[Session, tuple[SendMessage]]:
        return messages.queued(session, message, now), (message,)

    service = app.extensions["omnivoice.calls"]
    assert service.amend(call.caller, change, call.call_sid) is not None
    return message


def queued_jobs(app: Flask) -> list[dict[str, Any]]:
    """The jobs the relay finds in the event stream now (relayed to a list, acknowledged)."""
    found: list[str] = []
    jobs = runtime(app)
    relay = OutboxRelay(
        jobs.stream, jobs.sealer, lambda _key, sealed: found.append(sealed), jobs.outcomes, "t"
    )
    relay.drain()
    return [open_job({"job": sealed}, jobs.sealer) for sealed in found]


def message_entry(app: Flask, key: str, caller: str = CALLER) -> dict[str, Any]:
    """What the caller's session knows of message ``key``."""
    session = app.extensions["omnivoice.store"].load(caller).session
    entry: dict[str, Any] = session.messages[key]
    return entry


def stream_events(app: Flask, name: str) -> list[dict[str, Any]]:
    """Events named ``name`` in the event stream, oldest first."""
    stream = app.extensions["omnivoice.events"]
    found = []
    for shard in range(stream.shards):
        for _id, fields in stream.redis.xrange(stream.keys.events(shard)):
            event = json.loads(fields[b"e"])
            if event.get("name") == name:
                found.append(event)
    return sorted(found, key=lambda e: e.get("at", 0))


def twilio_message(sid: str, to: str, body: str, created: float | None = None) -> dict[str, Any]:
    """A Message resource as Twilio's API returns it."""
    when = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(created or time.time()))
    return {
        "sid": sid,
        "account_sid": ACCOUNT,
        "to": to,
        "from": FROM_NUMBER,
        "body": body,
        "status": "queued",
        "date_created": when,
        "date_updated": when,
        "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json",
    }


def form_of(call: Any) -> dict[str, str]:
    """The form fields of a request ``responses`` recorded."""
    from urllib.parse import parse_qs

    body = call.request.body
    text = body.decode() if isinstance(body, bytes) else str(body)
    return {name: values[0] for name, values in parse_qs(text).items()}


def mock_created(rsps: responses.RequestsMock, sid: str = "SM" + "1" * 32) -> None:
    """Twilio taking a text: 201 with the Message resource."""

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        from urllib.parse import parse_qs

        fields = parse_qs(request.body if isinstance(request.body, str) else request.body.decode())
        doc = twilio_message(sid, fields["To"][0], fields["Body"][0])
        return 201, {"Content-Type": "application/json"}, json.dumps(doc)

    rsps.add_callback(responses.POST, MESSAGES_URL, callback=answer)
