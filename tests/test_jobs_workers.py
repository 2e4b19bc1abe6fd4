"""Real Dramatiq workers on real brokers (Redis and RabbitMQ at 127.0.0.1:5672): a text goes
from the event stream through the relay and the queue to Twilio once, transient failures are
retried through the broker, and a worker killed mid-send leaves exactly one text at Twilio."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
import redis
import responses
from flask import Flask

from tests.conftest import AUTH_TOKEN, REDIS_URL, REPO, on_topologies
from tests.support_jobs import (
    ACCOUNT,
    BASE,
    FROM_NUMBER,
    MESSAGES_URL,
    form_of,
    live_session,
    message_entry,
    mock_created,
    queue_message,
    runtime,
    sending_app,
)
from tests.support_twilio_api import MessagesApi

pytestmark = [on_topologies("single"), pytest.mark.timeout(90)]
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
FAST_REDELIVERY = {"heartbeat_timeout_ms": 1500, "maintenance_chance": 1_000_000}


def _rabbitmq_or_fail() -> None:
    try:
        pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)).close()
    except Exception as exc:
        pytest.fail(f"RabbitMQ does not answer at {RABBITMQ_URL} (.ci/run starts it): {exc}")


def _delete_queues(prefix: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        channel = connection.channel()
        for suffix in ("", ".DQ", ".XQ"):
            channel.queue_delete(f"{prefix}.messages{suffix}")
    finally:
        connection.close()


@pytest.fixture(params=["redis", "rabbitmq"])
def queue(request: pytest.FixtureRequest, redis_client: redis.Redis) -> Iterator[dict[str, Any]]:
    """The settings of a real broker for this test."""
    if request.param == "redis":
        yield {"QUEUE_URL": REDIS_URL, "QUEUE_BROKER_OPTIONS": FAST_REDELIVERY}
        return
    _rabbitmq_or_fail()
    prefix = redis_client.test_prefix  # type: ignore[attr-defined]
    yield {"QUEUE_URL": RABBITMQ_URL}
    _delete_queues(prefix)


def _wait_for(what: Callable[[], Any], seconds: float = 20.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting after {seconds} s")


def _status(app: Flask, key: str) -> str:
    return str(message_entry(app, key)["status"])


@pytest.fixture
def app(make_app: Callable[..., Flask], tmp_path: Path, queue: dict[str, Any]) -> Iterator[Flask]:
    built = sending_app(make_app, tmp_path, QUEUE_BROKER=None, **queue)
    yield built
    runtime(built).close()


def test_a_worker_sends_a_queued_text_once(app: Flask) -> None:
    call = live_session(app)
    with responses.RequestsMock() as rsps:
        mock_created(rsps, "SM" + "5" * 32)
        runtime(app).start(worker_threads=2)
        message = queue_message(app, call)
        _wait_for(lambda: _status(app, message.key) == "sent")
        assert len(rsps.calls) == 1
        fields = form_of(rsps.calls[0])
    assert fields["From"] == FROM_NUMBER and fields["Body"].startswith("Pick a flight: https://")
    assert message_entry(app, message.key)["sid"] == "SM" + "5" * 32


def test_a_worker_retries_a_server_error_through_the_broker(app: Flask) -> None:
    call = live_session(app)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, MESSAGES_URL, json={"code": 20500, "message": "oops"}, status=500)
        mock_created(rsps)  # responses answers in order: first the 500, then the 201
        runtime(app).start(worker_threads=1)
        message = queue_message(app, call)
        _wait_for(lambda: _status(app, message.key) == "sent")
        assert len(rsps.calls) == 2


def test_a_worker_records_a_failure_when_retries_run_out(app: Flask) -> None:
    call = live_session(app)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(
            responses.POST, MESSAGES_URL, json={"code": 20429, "message": "slow down"}, status=429
        )
        runtime(app).start(worker_threads=1)
        message = queue_message(app, call)
        _wait_for(lambda: _status(app, message.key) == "failed")
        assert len(rsps.calls) == 3  # the first try and max_retries (2) retries
    assert message_entry(app, message.key)["error_code"] == "20429"


def _worker(config: dict[str, Any]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support_jobs_worker", json.dumps(config)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "ready", f"the worker did not start: {line!r}"
    return process


def test_a_worker_killed_mid_send_leaves_exactly_one_text_at_twilio(
    app: Flask, flows_dir: Path, queue: dict[str, Any]
) -> None:
    api = MessagesApi().start()
    config = {
        **queue,
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": app.config["REDIS_KEY_PREFIX"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "FLOWS_DIR": str(flows_dir),
        "DATABASE_URL": app.config["DATABASE_URL"],
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": FROM_NUMBER,
        "PUBLIC_BASE_URL": BASE,
        "TWILIO_API_URL": api.url,
        "DEV_MODE": False,
        "FLOW_RELOAD_SECONDS": 0,
        "HISTORY_IN_PROCESS": False,
        "JOBS_IN_PROCESS": False,
        "CONFIGURE_LOGGING": False,
        # A redelivery this soon after the claim waits for the claim to go stale, then asks.
        "JOBS_CLAIM_BUSY_SECONDS": 1.0,
        "JOBS_RETRY": {"max_retries": 6, "min_backoff_ms": 300, "max_backoff_ms": 1000},
    }
    first = second = None
    try:
        api.hold.set()  # Twilio takes the text, and the worker dies before hearing so
        first = _worker(config)
        message = queue_message(app, live_session(app))
        runtime(app).relay("test-relay").drain()
        assert api.got_post.wait(20), "the first worker never posted the text"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        api.hold.clear()
        api.release.set()
        assert _status(app, message.key) == "queued"
        second = _worker(config)
        _wait_for(lambda: _status(app, message.key) == "sent", 30)
        assert api.posts == 1, "the text reached Twilio twice"
        assert api.lists >= 1  # the redelivery asked Twilio first
        assert message_entry(app, message.key)["sid"] == f"SM{1:032d}"
    finally:
        for process in (first, second):
            if process is not None:
                if process.poll() is None:
                    process.kill()
                    process.wait(10)
                if process.stdout is not None:
                    process.stdout.close()
        api.stop()


def test_a_sentinel_queue_url_sends_through_the_master_the_sentinels_name(
    make_app: Callable[..., Flask], tmp_path: Path, redis_sentinel_url: str
) -> None:
    from redis.sentinel import SentinelConnectionPool

    app = sending_app(make_app, tmp_path, QUEUE_BROKER=None, QUEUE_URL=redis_sentinel_url)
    broker = runtime(app).broker
    assert isinstance(broker.client.connection_pool, SentinelConnectionPool)  # type: ignore[attr-defined]
    call = live_session(app)
    try:
        with responses.RequestsMock() as rsps:
            mock_created(rsps)
            runtime(app).start(worker_threads=1)
            message = queue_message(app, call)
            _wait_for(lambda: _status(app, message.key) == "sent")
            assert len(rsps.calls) == 1
    finally:
        runtime(app).close()
        delete_prefix_on(redis_sentinel_url, app.config["REDIS_KEY_PREFIX"])


def delete_prefix_on(url: str, prefix: str) -> None:
    """Delete the queue's keys the run left on the Redis behind ``url``."""
    from tests.conftest import client_for, delete_under

    connection = client_for(url)
    try:
        delete_under(connection, prefix)
    finally:
        connection.close()
