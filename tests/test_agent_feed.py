"""The agents' feed (``context/agent_feed.py``) on every Redis topology, and how the app reads it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from flask import Flask

from context.agent_feed import LONGEST_BLOCK_MS, AgentFeed, is_entry_id
from context.keys import Keys
from tests.conftest import REDIS_URL, app_for_tests
from tests.support_twilio import prefix_of


@pytest.fixture
def feed(redis_client: redis.Redis) -> AgentFeed:
    return AgentFeed(redis_client, Keys(prefix_of(redis_client)), maxlen=50, ttl=60)


def test_entries_come_back_in_order_after_any_id(
    feed: AgentFeed, redis_client: redis.Redis
) -> None:
    assert feed.last_id() == "0-0"
    assert feed.append([{"name": "handoff", "n": i} for i in range(3)])
    entries = feed.after("0-0")
    assert [e.event["n"] for e in entries] == [0, 1, 2]
    assert all(is_entry_id(e.id) for e in entries)
    assert [e.event["n"] for e in feed.after(entries[0].id)] == [1, 2]
    assert feed.last_id() == entries[-1].id
    assert [e.event["n"] for e in feed.read(entries[1].id, block=False)] == [2]
    assert [e.event["n"] for e in feed.since(60, time.time())] == [0, 1, 2]
    assert 0 < redis_client.ttl(feed.key) <= 60


def test_a_blocking_read_waits_no_longer_than_asked(feed: AgentFeed) -> None:
    started = time.monotonic()
    assert feed.read("$", longest=0.2) == []
    assert time.monotonic() - started < 1.0


def test_the_feed_is_capped(feed: AgentFeed, redis_client: redis.Redis) -> None:
    for _ in range(10):
        feed.append([{"name": "queue_waiting"}] * 20)
    assert redis_client.xlen(feed.key) < 200  # MAXLEN ~ 50 trims in whole nodes


@pytest.mark.parametrize("value", ["", "abc", "1-", "-1", "1-2-3", "1" * 30 + "-0", "1-2\n"])
def test_only_stream_ids_are_entry_ids(value: str) -> None:
    assert not is_entry_id(value)


def test_a_dead_redis_loses_the_append_loudly_but_raises_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = redis.Redis(port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    feed = AgentFeed(dead, Keys("x"))
    assert feed.append([{"name": "handoff"}]) is False
    assert "lost 1 event" in caplog.text


def test_the_app_reads_the_feed_with_a_long_timeout_client_of_its_own(
    flows_dir: Path, make_app: Callable[..., Flask]
) -> None:
    app = app_for_tests(flows_dir, REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX="feed-reader-test")
    feed: AgentFeed = app.extensions["omnivoice.feed"]
    assert feed.reader is not feed.redis
    assert feed.block_ms == LONGEST_BLOCK_MS
    shared = make_app()  # a test's own client serves both
    assert shared.extensions["omnivoice.feed"].reader is shared.extensions["omnivoice.feed"].redis
