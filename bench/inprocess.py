"""The real app built in-process on real Redis, for the benchmarks that need no server.

:func:`app_on_redis` yields ``create_app(config)`` on a private key prefix and a private copy of
``flows/``, and deletes the prefix's keys afterwards. Importing :mod:`app` builds its default WSGI
app, which configures logging at INFO; :func:`quiet_logging` turns that back down so a benchmark
prints its tables, not one line per webhook.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import redis
from flask import Flask

from bench.servers import (
    AUTH_TOKEN,
    REDIS_URL,
    SECRET_KEY,
    delete_prefix,
    flows_copy,
    redis_connection,
    unique_prefix,
)


def quiet_logging(level: int = logging.ERROR) -> None:
    """Log only ``level`` and above (the app's import configured INFO)."""
    logging.getLogger().setLevel(level)


def _create_app() -> Any:
    """``app.create_app``, imported with the default app's logging turned down."""
    previous = os.environ.get("LOG_LEVEL")
    os.environ["LOG_LEVEL"] = "ERROR"
    # The default app is built on the same Redis, so it does not report the in-process stand-in.
    os.environ.setdefault("REDIS_URL", REDIS_URL)
    os.environ.setdefault("SECRET_KEY", SECRET_KEY)
    try:
        from app import create_app  # importing app builds its default app: only when needed
    finally:
        if previous is None:
            os.environ.pop("LOG_LEVEL", None)
        else:
            os.environ["LOG_LEVEL"] = previous
    return create_app


@contextlib.contextmanager
def app_on_redis(
    kind: str, connection: redis.Redis | None = None, **overrides: Any
) -> Iterator[tuple[Flask, redis.Redis, str]]:
    """``(app, redis connection, key prefix)``; every key under the prefix is deleted after."""
    create_app = _create_app()
    quiet_logging()
    own = connection is None
    client = connection if connection is not None else redis_connection()
    prefix = unique_prefix(kind)
    try:
        with flows_copy() as flows:
            config = {
                "TESTING": True,
                "REDIS_CLIENT": client,
                "REDIS_KEY_PREFIX": prefix,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "FLOWS_DIR": flows,
                "DEV_MODE": False,
                "PUBLIC_BASE_URL": None,
                "CONFIGURE_LOGGING": False,
                "DEMO_API": True,  # the demo flow's data dips
                **overrides,
            }
            yield create_app(config), client, prefix
    finally:
        delete_prefix(client, prefix)
        if own:
            client.close()
