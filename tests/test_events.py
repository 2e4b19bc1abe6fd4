"""Events: what a saved turn records reaches the Redis Stream and the sinks, masked, exactly once.

Real Redis, real HTTP through the Flask client, signed as Twilio signs. The stream is read back
the way the history writer and the console will read it: a consumer group per reader.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from flask import Flask

from context.event_stream import EventStream
from context.keys import Keys
from context.redis_client import Topology, topology_of
from context.sessions import SessionStore
from conversation.events import MemorySink
from ivr.session import Session
from simulator import Call, FlaskTransport
from tests.conftest import AUTH_TOKEN
from tests.support_secrets import mentions
from tests.support_twilio import CALLER, prefix_of

SCHEMA_KEYS = {
    "v", "name", "at", "channel", "caller", "call_sid", "conversation", "flow", "version",
    "node", "data",
}  # fmt: skip

PIN_FLOW = """\
id: banking
numbers: ["+14155550100"]
default: true
sensitive: [pin]
start: ask_pin
nodes:
  ask_pin:
    gather: {prompt: Key in your PIN., num_digits: 4}
    validate: {pattern: "^[0-9]{4}$"}
    save_as: pin
    next: check
  check:
    say: "Thanks. Your PIN {{ pin }} is noted."
    transfer: {queue: support, context: [pin]}
"""


def dial(app: Flask, **kwargs: Any) -> Call:
    return Call(FlaskTransport(app), AUTH_TOKEN, **kwargs).dial()


def stream_of(app: Flask) -> EventStream:
    stream = app.extensions["omnivoice.events"]
    assert isinstance(stream, EventStream)
    return stream


def read_all(stream: EventStream, group: str = "test") -> list[dict[str, Any]]:
    stream.ensure_group(group)
    return [entry.event for entry in stream.read(group, "reader", count=1000)]


def test_a_call_s_events_reach_the_stream_in_order_with_the_schema(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()
    c = dial(app)
    c.press("2")
    c.say("A B C 1 2 3")
    c.hang_up()
    events = read_all(stream_of(app))
    names = [e["name"] for e in events]
    assert names[0] == "resume_fresh"
    assert names[-1] == "call_ended"
    assert names.count("input") == 2
    assert all(set(e) == SCHEMA_KEYS for e in events)
    first = events[0]
    assert (first["v"], first["channel"], first["caller"], first["flow"]) == (
        1, "voice", CALLER, "airline"
    )  # fmt: skip
    assert first["conversation"] and {e["conversation"] for e in events} == {first["conversation"]}
    assert {e["call_sid"] for e in events} == {c.call_sid}
    said = [e for e in events if e["name"] == "input"][1]
    assert (said["node"], said["data"]["value"], said["data"]["by"]) == (
        "confirmation", "ABC123", "speech"
    )  # fmt: skip


def test_each_consumer_group_gets_every_event_once_and_acks_them(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()
    dial(app).press("1")
    stream = stream_of(app)
    stream.ensure_group("history")
    stream.ensure_group("console")
    history = stream.read("history", "writer-1")
    assert history and stream.read("history", "writer-2") == []  # delivered once per group
    assert [e.event for e in stream.read("console", "pop")] == [e.event for e in history]
    # Unacknowledged entries come back to the consumer that had them (a crashed writer).
    assert [e.id for e in stream.read("history", "writer-1", pending=True)] == [
        e.id for e in history
    ]
    assert stream.ack("history", history) == len(history)
    assert stream.read("history", "writer-1", pending=True) == []


def test_sse_ids_resume_a_shard_after_the_last_seen_event(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    c = dial(app)
    c.press("1")
    stream = stream_of(app)
    stream.ensure_group("sse")
    entries = stream.read("sse", "browser")
    later = stream.since(entries[0].sse_id)
    assert [e.id for e in later] == [e.id for e in entries[1:]]
    assert entries[0].sse_id.startswith(f"{stream.shard_of(CALLER)}-")


def test_sensitive_values_never_reach_the_stream_or_the_sinks(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    (flows_dir / "airline.yaml").unlink()
    (flows_dir / "banking.yaml").write_text(PIN_FLOW)
    sink = MemorySink()
    app = make_app(EVENT_SINKS=(sink,))
    c = dial(app)
    c.press("4321")
    assert "4321" in c.last_heard  # the flow itself may say it to the caller...
    events = read_all(stream_of(app))
    assert not mentions(events, "4321")  # ...but no event carries it
    assert not mentions([e.to_dict() for e in sink.events], "4321")
    handoff = next(e for e in events if e["name"] == "handoff")
    data = handoff["data"]
    assert (data["route"], data["target"]) == ("queue", "support")
    assert data["bundle"]["context"] == {"pin": "***"}
    assert data["bundle"]["inputs"] == {"pin": "***"}
    assert data["handoff_id"] == data["bundle"]["id"]
    assert next(e for e in events if e["name"] == "input")["data"]["value"] == "***"


def test_a_save_that_loses_its_race_records_nothing(
    redis_client: redis.Redis,
) -> None:
    keys = Keys(prefix_of(redis_client))
    stream = EventStream(redis_client, keys, shards=2)
    cluster = topology_of(redis_client) is Topology.CLUSTER
    store = SessionStore(redis_client, keys, 300, events=stream, cluster=cluster)
    session = Session(caller=CALLER, flow_id="airline", flow_version="v1", call_sid="CA1")
    event = {"name": "resume_fresh"}
    assert store.save(session, 0, events=[event]) is not None
    assert store.save(session.evolve(step=1), 0, events=[event, event]) is None  # stale seq
    assert redis_client.xlen(stream.key_for(CALLER)) == 1


def test_on_a_cluster_events_follow_the_save_and_only_a_save_that_stood(
    redis_client: redis.Redis,
) -> None:
    keys = Keys(prefix_of(redis_client))
    stream = EventStream(redis_client, keys, shards=2)
    store = SessionStore(redis_client, keys, 300, events=stream, cluster=True)
    session = Session(caller=CALLER, flow_id="airline", flow_version="v1", call_sid="CA1")
    event = {"name": "resume_fresh"}
    assert store.save(session, 0, events=[event, event]) is not None
    assert store.save(session.evolve(step=1), 0, events=[event]) is None
    assert redis_client.xlen(stream.key_for(CALLER)) == 2
    assert 0 < redis_client.ttl(stream.key_for(CALLER)) <= stream.ttl


def test_sinks_get_events_after_the_save_and_a_failing_sink_harms_nothing(
    make_app: Callable[..., Flask],
) -> None:
    class Broken:
        def emit(self, events: object) -> None:
            raise RuntimeError("sink down")

    sink = MemorySink()
    app = make_app(EVENT_SINKS=(Broken(), sink))
    c = dial(app)
    assert "For flight status" in c.last_heard
    c.press("1")
    assert "confirmation code" in c.last_heard
    assert sink.names()[:2] == ["resume_fresh", "input"]


def test_a_resumed_call_keeps_its_conversation_and_a_fresh_start_gets_a_new_one(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    flow = flows_dir / "airline.yaml"  # a new call takes a live call's session over
    flow.write_text(flow.read_text().replace("  ask: true", "  ask: true\n  concurrent: takeover"))
    app = make_app()
    first = dial(app)
    first.press("2")
    first.hang_up()
    back = dial(app)
    back.press("1")  # continue
    again = dial(app)  # supersedes the live call, which resumes again: same matter
    again.press("2")  # start over: the flow restarts, the matter (and its call) stays one
    events = read_all(stream_of(app))
    by_call: dict[str, set[str]] = {}
    for event in events:
        by_call.setdefault(event["call_sid"], set()).add(event["conversation"])
    assert by_call[first.call_sid] == by_call[back.call_sid]
    declined = next(e for e in events if e["name"] == "resume_declined")
    assert declined["conversation"] == next(iter(by_call[first.call_sid]))
