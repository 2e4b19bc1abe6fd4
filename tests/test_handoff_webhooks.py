"""The outgoing handoff webhook: signed, retried with backoff, at least once, never twice once
acknowledged.

Real Redis on every topology (the event stream and its consumer group), a real HTTP receiver on
loopback that verifies each signature with ``standardwebhooks``, handoff events built by the
real engine, and at the end real calls through the Twilio front.
"""

from __future__ import annotations

import base64
import logging
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask import Flask

from context.event_stream import EventStream
from context.keys import Keys
from conversation import handoff_webhooks, webhook_runner
from conversation.events import from_effects
from conversation.handoff_webhooks import GROUP, HandoffWebhooks, WebhookTarget, target_of
from ivr import engine
from ivr.errors import ConfigError
from ivr.flow import load_flow_text
from ivr.turn import Answer
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_receiver import SLOW, Receiver
from tests.support_twilio import free_port, prefix_of

SECRET = "whsec_" + base64.b64encode(b"omnivoice-test-webhook-secret-32").decode()
CALLER = "+14155550123"
PIN = "8642"
FAST = {"first_retry": 0.1, "max_pause": 0.4, "timeout": 0.5}

FLOW = """\
id: bank
numbers: ["+14155550100"]
default: true
sensitive: [pin]
start: pin
nodes:
  pin:
    gather: {prompt: Key in your PIN., num_digits: 4}
    save_as: pin
    next: agent
  agent:
    transfer: {queue: cards, context: [pin], reason: "PIN {{ pin }} given"}
"""


class Killed(BaseException):
    """The process dies here (not an error the consumer could catch)."""


class DiesAfterPosting(requests.Session):
    """An HTTP session whose process is killed right after the request went out."""

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        super().post(*args, **kwargs)
        raise Killed


class DiesBeforePosting(requests.Session):
    """An HTTP session whose process is killed before the request goes out."""

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        raise Killed


@pytest.fixture
def stream(redis_client: redis.Redis) -> EventStream:
    return EventStream(redis_client, Keys(prefix_of(redis_client)), shards=2)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(SECRET)
    yield server
    server.stop()


@pytest.fixture
def sessions() -> Iterator[Callable[[type[requests.Session]], requests.Session]]:
    made: list[requests.Session] = []

    def make(kind: type[requests.Session] = requests.Session) -> requests.Session:
        made.append(kind())
        return made[-1]

    yield make
    for session in made:
        session.close()


def handed_over(stream: EventStream, call_sid: str = "CA" + "1" * 32) -> dict[str, Any]:
    """Put a real turn's events on the stream (a PIN, then a handoff); the handoff's bundle."""
    flow = load_flow_text(textwrap.dedent(FLOW), "bank.yaml", "bank")
    turn = engine.start(flow, caller=CALLER, call_sid=call_sid, at=time.time())
    turn = engine.step(flow, turn.session, Answer(PIN, None, None, at=time.time()))
    events = [e.to_dict() for e in from_effects(turn.effects, turn.session, flow, time.time())]
    assert [e["name"] for e in events].count("handoff") == 1 and len(events) > 1
    assert stream.append(CALLER, [stream.encode(e) for e in events])
    return next(e["data"]["bundle"] for e in events if e["name"] == "handoff")


def consumer(
    stream: EventStream, url: str, http: requests.Session, name: str = "one", **settings: Any
) -> HandoffWebhooks:
    return HandoffWebhooks(stream, WebhookTarget(url, SECRET), name, http, **{**FAST, **settings})


def run_until(done: Callable[[], bool], *consumers: HandoffWebhooks, seconds: float = 10.0) -> None:
    """Run passes of ``consumers`` until ``done()`` (or fail after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the webhook was not delivered in time"
        for each in consumers:
            each.run_once()
        time.sleep(0.02)


def run_for(seconds: float, *consumers: HandoffWebhooks) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for each in consumers:
            each.run_once()
        time.sleep(0.02)


# ---- delivery -----------------------------------------------------------------------------
def test_two_503s_then_one_accepted_delivery_with_the_same_id(
    stream: EventStream, receiver: Receiver, sessions: Callable[..., requests.Session]
) -> None:
    receiver.script = [503, 503]
    bundle = handed_over(stream)
    webhooks = consumer(stream, receiver.url, sessions())
    run_until(lambda: bool(receiver.accepted), webhooks)
    run_for(0.6, webhooks)  # nothing more comes
    assert [r.status for r in receiver.received] == [503, 503, 200]
    assert len(receiver.accepted) == 1
    assert {r.webhook_id for r in receiver.received} == {bundle["id"]}
    assert all(r.verified == bundle for r in receiver.received)  # signed, and the bundle itself
    assert receiver.received[0].headers["content-type"] == "application/json"
    assert stream.pending(GROUP) == []


def test_the_waits_between_tries_grow(
    stream: EventStream, receiver: Receiver, sessions: Callable[..., requests.Session]
) -> None:
    receiver.script = [503, 503]
    handed_over(stream)
    # Pauses long enough that a loaded machine's lateness per pass (up to about 0.2 s seen on a
    # cluster, where a pass reads sixteen keys) cannot hide that the second one is twice the first.
    webhooks = consumer(stream, receiver.url, sessions(), first_retry=0.6, max_pause=5)
    stamps: list[float] = []
    seen = 0

    def note_arrivals() -> bool:
        nonlocal seen
        while receiver.count() > seen:
            stamps.append(time.monotonic())
            seen += 1
        return bool(receiver.accepted)

    run_until(note_arrivals, webhooks)
    first, second = stamps[1] - stamps[0], stamps[2] - stamps[1]
    # first_retry, then twice that, give or take how long each request took to arrive
    assert first >= 0.5 and second >= 1.1 and second > 1.4 * first
    assert webhooks.pause_after(1) == 0.6 and webhooks.pause_after(10) == 5


def test_a_400_is_not_retried(
    stream: EventStream,
    receiver: Receiver,
    sessions: Callable[..., requests.Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.script = [400]
    bundle = handed_over(stream)
    webhooks = consumer(stream, receiver.url, sessions())
    with caplog.at_level(logging.ERROR, logger=handoff_webhooks.__name__):
        run_for(0.8, webhooks)
    assert [r.status for r in receiver.received] == [400]
    assert stream.pending(GROUP) == []
    assert f"handoff {bundle['id']} refused" in caplog.text and "HTTP 400" in caplog.text


@pytest.mark.parametrize("status", [408, 429, 500, 502])
def test_transient_statuses_are_retried(
    stream: EventStream,
    receiver: Receiver,
    sessions: Callable[..., requests.Session],
    status: int,
) -> None:
    receiver.script = [status]
    handed_over(stream)
    run_until(lambda: bool(receiver.accepted), consumer(stream, receiver.url, sessions()))
    assert [r.status for r in receiver.received] == [status, 200]


def test_a_timeout_is_retried(
    stream: EventStream, receiver: Receiver, sessions: Callable[..., requests.Session]
) -> None:
    receiver.script = [SLOW]  # answers after 1 s: past the consumer's timeout
    handed_over(stream)
    webhooks = consumer(stream, receiver.url, sessions(), timeout=0.3, first_retry=0.5)
    run_until(lambda: len(receiver.accepted) >= 2, webhooks)
    assert len(receiver.received) == 2  # the slow one (too late) and the retry
    assert handoff_webhooks.TIMEOUT == 5.0


def test_a_receiver_that_is_not_there_is_retried_then_given_up(
    stream: EventStream,
    sessions: Callable[..., requests.Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bundle = handed_over(stream)
    nowhere = f"http://127.0.0.1:{free_port()}/hooks"
    webhooks = consumer(stream, nowhere, sessions(), max_attempts=3)
    with caplog.at_level(logging.INFO, logger=handoff_webhooks.__name__):
        run_until(lambda: "gave up" in caplog.text, webhooks)
    tries = [r for r in caplog.records if bundle["id"] in r.getMessage()]
    assert [r.levelname for r in tries] == ["WARNING", "WARNING", "ERROR"]
    assert "after 3 attempts" in tries[-1].getMessage()
    assert "ConnectionError" in tries[0].getMessage()
    assert stream.pending(GROUP) == []


def test_an_entry_older_than_the_limit_is_given_up_without_posting(
    stream: EventStream,
    receiver: Receiver,
    sessions: Callable[..., requests.Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    handed_over(stream)
    tomorrow = consumer(stream, receiver.url, sessions(), clock=lambda: time.time() + 86401)
    with caplog.at_level(logging.ERROR, logger=handoff_webhooks.__name__):
        tomorrow.drain()
    assert receiver.received == []
    assert "gave up" in caplog.text
    assert stream.pending(GROUP) == []


def test_other_events_are_acknowledged_at_once(
    stream: EventStream, receiver: Receiver, sessions: Callable[..., requests.Session]
) -> None:
    receiver.script = [503]
    handed_over(stream)
    consumer(stream, receiver.url, sessions()).run_once()
    [left] = stream.pending(GROUP)  # only the handoff waits for its retry
    [entry] = [e for e in stream.since(f"{left.shard}-0") if e.id == left.id]
    assert entry.event["name"] == "handoff"


def test_the_log_holds_neither_the_secret_nor_the_body(
    stream: EventStream,
    receiver: Receiver,
    sessions: Callable[..., requests.Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.script = [503, 400]
    handed_over(stream, "CA" + "1" * 32)
    handed_over(stream, "CA" + "2" * 32)
    with caplog.at_level(logging.DEBUG):
        run_for(0.8, consumer(stream, receiver.url, sessions()))
    assert len(receiver.received) == 3
    logged = caplog.text + repr([r.__dict__ for r in caplog.records])
    for secret in (SECRET, SECRET.removeprefix("whsec_"), CALLER, "PIN", "cards"):
        assert secret not in logged
    # Ours name the receiver by its host only: a URL's path or query may hold a token.
    ours = [r.getMessage() for r in caplog.records if r.name == handoff_webhooks.__name__]
    assert len(ours) == 3 and not [line for line in ours if "/hooks/omnivoice" in line]


# ---- crashes and replays ------------------------------------------------------------------
def test_a_consumer_killed_after_posting_is_replaced_with_the_same_webhook_id(
    stream: EventStream, receiver: Receiver, sessions: Callable[..., requests.Session]
) -> None:
    bundle = handed_over(stream)
    doomed = consumer(stream, receiver.url, sessions(DiesAfterPosting), name="doomed")
    with pytest.raises(Killed):
        doomed.run_once()
    left = stream.pending(GROUP)  # the whole batch it read: nothing was acknowledged
    assert left and {item.consumer for item in left} == {"doomed"}
    heir = consumer(stream, receiver.url, sessions(), name="heir", first_retry=0.3)
    heir.run_once()
    assert receiver.count() == 1  # not yet: the entry has not been idle long enough
    run_until(lambda: receiver.count() == 2, heir)
    run_for(0.5, heir)
    assert [r.webhook_id for r in receiver.received] == [bundle["id"], bundle["id"]]
    assert all(r.verified == bundle for r in receiver.received)
    assert stream.pending(GROUP) == []


def test_a_consumer_killed_before_posting_is_replaced_and_delivers_once(
    stream: EventStream, receiver: Receiver, sessions: Callable[..., requests.Session]
) -> None:
    bundle = handed_over(stream)
    doomed = consumer(stream, receiver.url, sessions(DiesBeforePosting), name="doomed")
    with pytest.raises(Killed):
        doomed.run_once()
    heir = consumer(stream, receiver.url, sessions(), name="heir")
    run_until(lambda: bool(receiver.accepted), heir)
    run_for(0.5, heir)
    assert [r.webhook_id for r in receiver.received] == [bundle["id"]]


def test_an_acknowledged_entry_is_never_delivered_again(
    stream: EventStream, receiver: Receiver, sessions: Callable[..., requests.Session]
) -> None:
    handed_over(stream)
    first = consumer(stream, receiver.url, sessions(), name="first")
    first.drain()
    assert len(receiver.accepted) == 1
    # The same consumer restarted, and another one, long after any retry would be due.
    again = consumer(stream, receiver.url, sessions(), name="first")
    other = consumer(stream, receiver.url, sessions(), name="other")
    run_for(0.6, again, other)
    assert stream.read(GROUP, "first", pending=True) == []
    assert stream.claim(GROUP, "other", 0) == []
    assert receiver.count() == 1


def test_a_consumer_busy_with_a_slow_receiver_keeps_the_rest_of_its_batch(
    stream: EventStream, receiver: Receiver, sessions: Callable[..., requests.Session]
) -> None:
    receiver.script = [SLOW] * 5  # each takes 0.4 s: the last starts well after first_retry
    receiver.slow_seconds = 0.4
    ids = [handed_over(stream, f"CA{n:032x}")["id"] for n in range(1, 6)]
    settings = {"first_retry": 1.0, "timeout": 0.6}
    busy = consumer(stream, receiver.url, sessions(), name="busy", **settings)
    other = consumer(stream, receiver.url, sessions(), name="other", **settings)
    working = threading.Thread(target=busy.run_once)
    working.start()
    run_for(2.4, other)  # looks for a crashed consumer's entries all along
    working.join()
    assert sorted(r.webhook_id for r in receiver.received) == sorted(ids)  # each once


def test_two_consumers_share_the_work_without_doubles(
    stream: EventStream, receiver: Receiver, sessions: Callable[..., requests.Session]
) -> None:
    ids = {handed_over(stream, f"CA{n:032x}")["id"] for n in range(1, 7)}
    receiver.script = [503, 503, 503]
    one = consumer(stream, receiver.url, sessions(), name="one")
    two = consumer(stream, receiver.url, sessions(), name="two")
    run_until(lambda: len(receiver.accepted) == len(ids), one, two)
    run_for(0.6, one, two)
    assert sorted(r.webhook_id for r in receiver.accepted) == sorted(ids)


# ---- configuration ------------------------------------------------------------------------
URL = "https://crm.example.com/h"
SHORT = "whsec_" + base64.b64encode(b"short").decode()


@pytest.mark.parametrize(
    ("url", "secret", "named", "says"),
    [
        (URL, None, "SECRET", "whsec_"),
        (None, SECRET, "URL", "HANDOFF_WEBHOOK_URL"),
        ("ftp://crm.example.com/h", SECRET, "URL", "https://"),
        ("https:///h", SECRET, "URL", "host"),
        ("http://crm.example.com/h", SECRET, "URL", "only sent over https"),
        (URL, "s3cr3t-not-whsec-but-long-enough", "SECRET", "whsec_"),
        (URL, "whsec_not*base64!", "SECRET", "does not decode"),
        (URL, SHORT, "SECRET", "holds 5 bytes"),
    ],
)
def test_a_bad_webhook_setting_is_refused_at_start_up(
    url: str | None, secret: str | None, named: str, says: str
) -> None:
    config = {"HANDOFF_WEBHOOK_URL": url, "HANDOFF_WEBHOOK_SECRET": secret, "DEV_MODE": False}
    with pytest.raises(ConfigError) as refused:
        target_of(config)
    assert refused.value.name == f"HANDOFF_WEBHOOK_{named}"
    assert says in str(refused.value)
    if secret and named == "SECRET":
        assert secret.removeprefix("whsec_") not in str(refused.value)  # never repeated


def test_good_webhook_settings_and_none(flows_dir: Path) -> None:
    assert target_of({}) is None
    found = target_of(
        {
            "HANDOFF_WEBHOOK_URL": "https://user:pw@crm.example.com/h?t=1",
            "HANDOFF_WEBHOOK_SECRET": SECRET,
        }
    )
    assert found is not None and found.host == "crm.example.com"
    assert target_of(
        {"HANDOFF_WEBHOOK_URL": "http://localhost:9/h", "HANDOFF_WEBHOOK_SECRET": SECRET}
    )
    dev = {"HANDOFF_WEBHOOK_URL": "http://crm.internal/h", "HANDOFF_WEBHOOK_SECRET": SECRET}
    assert target_of({**dev, "DEV_MODE": True})


def test_the_app_refuses_to_start_with_a_bad_secret(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HANDOFF_WEBHOOK_URL", "https://crm.example.com/h")
    monkeypatch.setenv("HANDOFF_WEBHOOK_SECRET", "whsec_tooshort")
    with pytest.raises(ConfigError) as refused:
        make_app()
    assert refused.value.name == "HANDOFF_WEBHOOK_SECRET"


# ---- through the whole app ----------------------------------------------------------------
@pytest.fixture
def bank_flows(flows_dir: Path) -> Path:
    for path in flows_dir.glob("*.yaml"):
        path.unlink()
    (flows_dir / "bank.yaml").write_text(FLOW)
    return flows_dir


def call_handed_over(app: Flask) -> Call:
    call = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    call.press(PIN)
    assert call.ended == "enqueue"
    return call


def test_a_real_call_s_bundle_reaches_the_receiver_as_the_api_serves_it(
    make_app: Callable[..., Flask],
    bank_flows: Path,
    receiver: Receiver,
    sessions: Callable[..., requests.Session],
) -> None:
    app = make_app(
        API_TOKEN="t", HANDOFF_WEBHOOK_URL=receiver.url, HANDOFF_WEBHOOK_SECRET=SECRET,
        HANDOFF_WEBHOOK_HTTP=sessions(),
    )  # fmt: skip
    call = call_handed_over(app)
    worker = webhook_runner.build(app.config, app.extensions["omnivoice.events"], "test")
    assert worker is not None
    worker.drain()
    served = app.test_client().get(
        f"/api/calls/{call.call_sid}/handoff", headers={"Authorization": "Bearer t"}
    )
    [delivered] = receiver.received
    assert delivered.verified == served.get_json()
    assert delivered.webhook_id == served.get_json()["id"]
    assert PIN not in delivered.body.decode()


def test_the_demo_process_delivers_in_a_thread_of_its_own(
    make_app: Callable[..., Flask], bank_flows: Path, receiver: Receiver
) -> None:
    app = make_app(
        HANDOFF_WEBHOOK_URL=receiver.url, HANDOFF_WEBHOOK_SECRET=SECRET,
        HANDOFF_WEBHOOK_IN_PROCESS=True,
    )  # fmt: skip
    running = app.extensions["omnivoice.webhooks"]
    try:
        call_handed_over(app)
        deadline = time.monotonic() + 10
        while not receiver.accepted:
            assert time.monotonic() < deadline, "the in-process webhook delivered nothing"
            time.sleep(0.05)
    finally:
        running.close()
        running.webhooks.http.close()
    assert not running.thread.is_alive()
    assert receiver.accepted[0].verified["call_sid"]


def test_without_a_url_nothing_runs(make_app: Callable[..., Flask]) -> None:
    app = make_app(HANDOFF_WEBHOOK_IN_PROCESS=True)
    assert "omnivoice.webhooks" not in app.extensions


def test_the_worker_command_records_history_and_posts_handoffs(
    make_app: Callable[..., Flask],
    bank_flows: Path,
    receiver: Receiver,
    sessions: Callable[..., requests.Session],
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'worker.db'}"
    app = make_app(
        DATABASE_URL=url, HANDOFF_WEBHOOK_URL=receiver.url, HANDOFF_WEBHOOK_SECRET=SECRET,
        HANDOFF_WEBHOOK_HTTP=sessions(),
    )  # fmt: skip
    runner = app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    call_handed_over(app)
    done = runner.invoke(args=["worker", "--once"])
    assert done.exit_code == 0, done.output
    assert "for the handoff webhook" in done.output
    [delivered] = receiver.accepted
    assert delivered.verified["route"] == {"kind": "queue", "target": "cards"}
