"""``QUEUE_URL``: which Dramatiq broker the app builds, and the settings it refuses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from flask import Flask

from app import settings_from_env
from ivr.errors import ConfigError
from jobs import broker as brokers
from tests.conftest import app_for_tests


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/3", "redis"),
        ("rediss://:pw@cache.example:6380/0", "redis"),
        ("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/jobs", "redis"),
        ("amqp://guest:guest@127.0.0.1:5672/", "rabbitmq"),
        ("amqps://rabbit.example/", "rabbitmq"),
    ],
)
def test_queue_urls_are_read(url: str, kind: str) -> None:
    target = brokers.check_queue_url(url)
    assert target is not None and (target.kind, target.url) == (kind, url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+cluster://a:7000,b:7001", "cannot run on a Redis Cluster"),
        ("kafka://broker:9092", "must be a Redis URL"),
        ("redis+sentinel://a:26379", "name the Sentinel service"),
        ("amqp:///", "names no host"),
    ],
)
def test_unusable_queue_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        brokers.check_queue_url(url)
    assert reason in str(caught.value) and "QUEUE_URL" in str(caught.value)


def test_a_password_is_masked_in_the_refusal() -> None:
    with pytest.raises(ConfigError) as caught:
        brokers.check_queue_url("redis+cluster://:hunter2@a:7000")
    assert "hunter2" not in str(caught.value)


def test_the_app_refuses_to_start_on_a_cluster_queue(flows_dir: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        app_for_tests(flows_dir, QUEUE_URL="redis+cluster://127.0.0.1:7000")
    assert "RabbitMQ" in str(caught.value)


def test_queue_settings_come_from_the_environment() -> None:
    settings = settings_from_env(
        {
            "QUEUE_URL": "amqp://127.0.0.1/",
            "SMTP_URL": "smtps://mail.example",
            "SMTP_FROM": "a@b.example",
            "TWILIO_MESSAGING_SERVICE_SID": "MG" + "1" * 32,
            "JOBS_IN_PROCESS": "yes",
        }
    )
    assert settings["QUEUE_URL"] == "amqp://127.0.0.1/" and settings["JOBS_IN_PROCESS"] is True
    assert settings["SMTP_URL"] == "smtps://mail.example"
    assert settings_from_env({"OMNIVOICE_DEV": "1"})["JOBS_IN_PROCESS"] is True
    assert settings_from_env({})["JOBS_IN_PROCESS"] is False
    with pytest.raises(ConfigError):
        settings_from_env({"JOBS_IN_PROCESS": "sometimes"})


def _broker(app: Flask) -> Any:
    return app.extensions["omnivoice.jobs"].broker


def test_the_sessions_redis_is_the_default_queue(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    if "omnivoice.jobs" not in app.extensions:  # a cluster: no queue unless QUEUE_URL says
        assert app.extensions["omnivoice.store"].cluster
        return
    broker = _broker(app)
    assert isinstance(broker, RedisBroker)
    assert broker.client is app.extensions["omnivoice.store"].redis
    assert broker.namespace == f"{app.config['REDIS_KEY_PREFIX']}:jobs"


def test_a_rabbitmq_queue_url_builds_a_rabbitmq_broker(make_app: Callable[..., Flask]) -> None:
    app = make_app(QUEUE_URL="amqp://guest:guest@127.0.0.1:5672/")
    assert isinstance(_broker(app), RabbitmqBroker)


def test_the_embedded_demo_queues_in_process(flows_dir: Path) -> None:
    app = app_for_tests(
        flows_dir, DEV_MODE=True, REDIS_URL=None, JOBS_IN_PROCESS=False, SECRET_KEY="k" * 32
    )
    assert isinstance(_broker(app), StubBroker)


def test_no_queue_outside_dev_mode_without_redis(flows_dir: Path) -> None:
    app = app_for_tests(flows_dir, REDIS_URL=None)
    assert "omnivoice.jobs" not in app.extensions
