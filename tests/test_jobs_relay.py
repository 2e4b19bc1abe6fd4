"""The outbox relay: ``message_queued`` events onto the queue, acknowledged only once the broker
took them; jobs that cannot be opened recorded as failed, never retried forever."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from dramatiq.brokers.stub import StubBroker
from flask import Flask

from context.sealing import Sealer
from conversation.message_jobs import queued_event_data
from ivr.states import EventName
from jobs.relay import GROUP, OutboxRelay
from tests.support_jobs import (
    CALLER,
    live_session,
    message_entry,
    queue_message,
    runtime,
    sending_app,
    stream_events,
)


@pytest.fixture
def app(make_app: Callable[..., Flask], tmp_path: Path) -> Flask:
    return sending_app(make_app, tmp_path)


def _relay(app: Flask, enqueue: Callable[[str, str], None] | None = None, **kw: Any) -> OutboxRelay:
    jobs = runtime(app)
    return OutboxRelay(
        jobs.stream, jobs.sealer, enqueue or jobs.jobs.enqueue, jobs.outcomes, "relay-1", **kw
    )


def test_a_queued_message_goes_on_the_queue_under_its_key(app: Flask) -> None:
    message = queue_message(app, live_session(app))
    assert _relay(app).drain() >= 1
    broker: StubBroker = runtime(app).broker  # type: ignore[assignment]
    [queued] = list(broker.queues[runtime(app).jobs.queue_name].queue)
    assert orjson.loads(queued)["message_id"] == message.key
    assert message.body.split(":")[0] not in queued.decode()  # the body stays sealed
    assert _relay(app).drain() == 0  # acknowledged: not relayed twice
    stream = runtime(app).stream
    assert stream.pending(GROUP) == []


def test_a_job_that_cannot_be_opened_is_recorded_as_failed_and_acknowledged(app: Flask) -> None:
    call = live_session(app)
    message = queue_message(app, call)
    _relay(app, lambda _k, _s: None).drain()  # the genuine one, out of the way
    store = app.extensions["omnivoice.store"]
    session = store.load(CALLER).session
    data = queued_event_data(message, session, Sealer.ephemeral())  # another key's seal
    event = {
        "name": EventName.MESSAGE_QUEUED.value,
        "caller": CALLER,
        "call_sid": call.call_sid,
        "data": data,
    }
    runtime(app).stream.append(CALLER, [orjson.dumps(event)])
    enqueued: list[str] = []
    _relay(app, lambda key, _s: enqueued.append(key)).drain()
    assert not enqueued
    entry = message_entry(app, message.key)
    assert entry["status"] == "failed" and "could not be opened" in entry["error"]
    [failed] = stream_events(app, "message_failed")
    assert failed["data"]["key"] == message.key
    assert runtime(app).stream.pending(GROUP) == []


def test_a_job_of_an_unknown_version_is_recorded_as_failed(app: Flask) -> None:
    call = live_session(app)
    sealer = runtime(app).sealer
    data = {"key": "MK" + "c" * 30, "channel": "sms", "node": "n", "job": sealer.seal(b'{"v": 99}')}
    event = {"name": "message_queued", "caller": CALLER, "call_sid": call.call_sid, "data": data}
    runtime(app).stream.append(CALLER, [orjson.dumps(event)])
    assert _relay(app, lambda _k, _s: None).drain() >= 1
    [failed] = stream_events(app, "message_failed")
    assert failed["data"]["key"] == "MK" + "c" * 30 and failed["data"]["status"] == "failed"


def test_a_broker_that_refuses_leaves_the_event_pending_until_it_takes_it(app: Flask) -> None:
    message = queue_message(app, live_session(app))

    def refuse(_key: str, _sealed: str) -> None:
        raise ConnectionError("the broker is down")

    _relay(app, refuse, reclaim_after=0.05).drain()
    [pending] = runtime(app).stream.pending(GROUP)  # the call's other events were acknowledged
    time.sleep(0.1)
    taken: list[str] = []
    _relay(app, lambda key, _s: taken.append(key), reclaim_after=0.05).drain()
    assert taken == [message.key] and pending.deliveries == 1
    assert runtime(app).stream.pending(GROUP) == []


def test_a_crashed_relays_entries_are_taken_by_another(app: Flask) -> None:
    message = queue_message(app, live_session(app))
    stream = runtime(app).stream
    stream.ensure_group(GROUP)
    assert stream.read(GROUP, "crashed", 100)  # read, never acknowledged
    time.sleep(0.1)
    taken: list[str] = []
    jobs = runtime(app)
    other = OutboxRelay(
        stream, jobs.sealer, lambda key, _s: taken.append(key), jobs.outcomes, "relay-2",
        reclaim_after=0.05,
    )  # fmt: skip
    other.drain()
    assert taken == [message.key]


def test_other_events_are_acknowledged_without_queueing(app: Flask) -> None:
    live_session(app)
    taken: list[str] = []
    assert _relay(app, lambda key, _s: taken.append(key)).drain() >= 1
    assert taken == [] and runtime(app).stream.pending(GROUP) == []


def test_a_job_that_cannot_be_opened_fails_in_its_flow_s_session_kept_aside(app: Flask) -> None:
    call = live_session(app)
    message = queue_message(app, call)
    _relay(app, lambda _k, _s: None).drain()  # the genuine one, out of the way
    store = app.extensions["omnivoice.store"]
    loaded = store.load(CALLER)
    airline = loaded.session
    pin = app.extensions["omnivoice.calls"].versions.pin
    flow = app.extensions["omnivoice.catalog"].get(airline.flow_id)
    assert store.save(airline, 0, flow=pin(flow), parked=True)  # kept aside, as a call to
    other = airline.evolve(flow_id="menu", call_sid="CA" + "9" * 32, messages={})  # another
    assert store.save(other, loaded.seq, flow=pin(flow))  # flow's number leaves it
    data = queued_event_data(message, airline, Sealer.ephemeral())  # another key's seal
    event = {
        "name": EventName.MESSAGE_QUEUED.value,
        "caller": CALLER,
        "call_sid": call.call_sid,
        "flow": airline.flow_id,
        "data": data,
    }
    runtime(app).stream.append(CALLER, [orjson.dumps(event)])
    _relay(app, lambda _k, _s: None).drain()
    kept = store.load_parked(CALLER, airline.flow_id).session
    assert kept is not None and kept.messages[message.key]["status"] == "failed"
