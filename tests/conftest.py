"""Shared fixtures: a real Redis with a key prefix per test, the app, and simulated calls.

Every test gets its own key prefix on the Redis at ``REDIS_URL`` (default the local one), and
its keys are deleted before and after. Requests are signed with the SDK's ``RequestValidator``
exactly as Twilio signs them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

REDIS_URL = os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
# Outside dev mode the app refuses to start without a SECRET_KEY (every worker must share one).
os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "0" * 48)

from app import create_app  # noqa: E402  (importing app builds its default app on REDIS_URL)
from simulator import Call, FlaskTransport  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
AUTH_TOKEN = "test-auth-token-0123456789abcdef"


def _delete(connection: redis.Redis, prefix: str) -> None:
    keys = list(connection.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        connection.delete(*keys)


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """A real Redis connection; the test owns the keys under ``redis_client.test_prefix``."""
    connection = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    connection.test_prefix = prefix  # type: ignore[attr-defined]
    _delete(connection, prefix)
    yield connection
    _delete(connection, prefix)
    connection.close()


@pytest.fixture
def flows_dir(tmp_path: Path) -> Path:
    """A copy of the repository's flows, which a test may edit."""
    target = tmp_path / "flows"
    shutil.copytree(REPO / "flows", target)
    return target


@pytest.fixture
def make_app(redis_client: redis.Redis, flows_dir: Path) -> Callable[..., Flask]:
    """Build an app on the test's Redis prefix and flows copy; keyword overrides go to config."""

    def build(**overrides: Any) -> Flask:
        config = {
            "TESTING": True,
            "REDIS_CLIENT": redis_client,
            "REDIS_KEY_PREFIX": redis_client.test_prefix,  # type: ignore[attr-defined]
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "FLOWS_DIR": str(flows_dir),
            "DEV_MODE": False,
            "PUBLIC_BASE_URL": None,
            "FLOW_RELOAD_SECONDS": 0,
            "CONFIGURE_LOGGING": False,
            **overrides,
        }
        return create_app(config)

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """The app with default test configuration."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> Any:
    """Flask's test client."""
    return app.test_client()


@pytest.fixture
def call(app: Flask) -> Callable[..., Call]:
    """Make a simulated call into ``app`` (not yet dialled)."""

    def make(**kwargs: Any) -> Call:
        return Call(FlaskTransport(app), AUTH_TOKEN, **kwargs)

    return make
