"""The console's live stream (``GET /agent/events``): Server-Sent Events from the agents' feed.

Real Redis on every topology, the Flask test client reading the stream unbuffered (the
generator runs as the test reads it), a real flow handing a caller over.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from redis.backoff import NoBackoff
from redis.retry import Retry

from console import live
from context.agent_feed import AgentFeed
from context.keys import Keys
from tests.support_console import (
    PIN,
    add_agent,
    close_history,
    console_config,
    hand_over,
    logged_in,
)
from tests.support_twilio import free_port


@pytest.fixture
def app(make_app: Callable[..., Flask], flows_dir: Path, tmp_path: Path) -> Iterator[Flask]:
    built = make_app(**console_config(flows_dir, tmp_path))
    add_agent(built)
    yield built
    close_history(built)


@dataclass
class Message:
    """One SSE message or comment, parsed."""

    id: str | None = None
    event: str | None = None
    data: Any = None
    comment: str | None = None
    retry: int | None = None


def messages(chunks: Iterator[bytes], seconds: float = 10.0) -> Iterator[Message]:
    """The stream's messages as they come (a test stops reading when it has seen enough)."""
    deadline = time.monotonic() + seconds
    buffer = ""
    for chunk in chunks:
        buffer += chunk.decode()
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            message = Message()
            for line in block.split("\n"):
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "":
                    message.comment = value
                elif field == "id":
                    message.id = value
                elif field == "event":
                    message.event = value
                elif field == "data":
                    message.data = json.loads(value)
                elif field == "retry":
                    message.retry = int(value)
            yield message
        assert time.monotonic() < deadline, "the stream took too long"


def read_until_keepalive(response: Any) -> list[Message]:
    """Every message until the first keep-alive comment (the stream has caught up)."""
    seen = []
    for message in messages(response.response):
        seen.append(message)
        if message.comment == "keepalive":
            break
    return seen


def test_the_stream_sends_feed_entries_with_their_ids(app: Flask) -> None:
    client, _ = logged_in(app)
    start = app.extensions["omnivoice.feed"].last_id()
    response = client.get(f"/agent/events?last_id={start}", buffered=False)
    try:
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        call = hand_over(app)  # after the connect: the stream must bring it
        seen = read_until_keepalive(response)
    finally:
        response.close()
    assert seen[0].retry == 2000
    events = [m for m in seen if m.event]
    assert [m.event for m in events] == ["handoff"]
    handoff = events[0]
    assert handoff.id == app.extensions["omnivoice.feed"].last_id()
    assert handoff.data["call_sid"] == call.call_sid
    assert handoff.data["data"]["bundle"]["inputs"]["pin"] == "***"
    assert PIN not in json.dumps(handoff.data)


def test_last_event_id_replays_exactly_what_was_missed(app: Flask) -> None:
    feed: AgentFeed = app.extensions["omnivoice.feed"]
    for number in range(4):
        feed.append(
            [{"v": 1, "name": "queue_waiting", "call_sid": "CA1", "data": {"position": number}}]
        )
    ids = [entry.id for entry in feed.after("0-0")]
    client, _ = logged_in(app)
    response = client.get(
        f"/agent/events?last_id={ids[0]}", headers={"Last-Event-ID": ids[1]}, buffered=False
    )  # a reconnect: the header wins over the id the page was drawn at
    try:
        seen = read_until_keepalive(response)
    finally:
        response.close()
    replayed = [m for m in seen if m.event]
    assert [m.id for m in replayed] == ids[2:]
    assert [m.data["data"]["position"] for m in replayed] == [2, 3]


@pytest.mark.parametrize("bad", ["garbage", "1-2-3", "9" * 30 + "-0", "-1", ""])
def test_a_bad_last_event_id_starts_from_the_page_id_or_now(app: Flask, bad: str) -> None:
    feed: AgentFeed = app.extensions["omnivoice.feed"]
    feed.append([{"v": 1, "name": "queue_waiting", "call_sid": "CA1", "data": {"position": 1}}])
    page_id = feed.last_id()
    feed.append([{"v": 1, "name": "queue_waiting", "call_sid": "CA1", "data": {"position": 2}}])
    client, _ = logged_in(app)
    with_page = client.get(
        f"/agent/events?last_id={page_id}", headers={"Last-Event-ID": bad}, buffered=False
    )
    try:
        assert with_page.status_code == 200
        seen = [m for m in read_until_keepalive(with_page) if m.event]
    finally:
        with_page.close()
    assert [m.data["data"]["position"] for m in seen] == [2]
    neither = client.get(
        f"/agent/events?last_id={bad}", headers={"Last-Event-ID": bad}, buffered=False
    )
    try:
        assert neither.status_code == 200
        assert [m for m in read_until_keepalive(neither) if m.event] == []  # from now on
    finally:
        neither.close()


def test_a_quiet_stream_sends_keepalives(app: Flask) -> None:
    client, _ = logged_in(app)
    response = client.get("/agent/events", buffered=False)
    try:
        comments = []
        for message in messages(response.response):
            if message.comment:
                comments.append(message.comment)
            if len(comments) == 2:
                break
    finally:
        response.close()
    assert comments == ["keepalive", "keepalive"]


def test_a_dead_redis_gets_comments_only_and_no_error() -> None:
    dead = redis.Redis(
        port=free_port(),
        socket_timeout=0.2,
        socket_connect_timeout=0.2,
        retry=Retry(NoBackoff(), 0),
    )
    feed = AgentFeed(dead, Keys("test-dead"))
    naps: list[float] = []
    body = live.stream(feed, "1-0", heartbeat=0.1, sleep=naps.append)
    sent = [next(body) for _ in range(4)]
    body.close()
    dead.close()
    assert sent[0] == "retry: 2000\n\n"
    assert all(text.startswith(":") for text in sent[1:])
    assert naps == [live.BACKOFF_SECONDS] * 2  # the third nap comes after the last read


def test_ids_compare_as_stream_ids() -> None:
    assert live.newer("10-0", "9-5") == "10-0"
    assert live.newer("10-1", "10-2") == "10-2"
    assert live.start_id("bad", "1-1") == "1-1"
    assert live.start_id(None, None) is None
