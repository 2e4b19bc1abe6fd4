"""The job queue where it runs: in the embedded demo's own process, and in
``flask --app app worker --once``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import responses
from flask import Flask
from twilio.rest import Client

from tests.conftest import AUTH_TOKEN, app_for_tests
from tests.support_jobs import (
    ACCOUNT,
    BASE,
    FROM_NUMBER,
    history_url,
    live_session,
    message_entry,
    mock_created,
    queue_message,
    runtime,
    sending_app,
)

pytestmark = pytest.mark.timeout(60)


def test_the_embedded_demo_sends_from_its_own_process(flows_dir: Path, tmp_path: Path) -> None:
    app = app_for_tests(
        flows_dir,
        DEV_MODE=True,
        REDIS_URL=None,
        SECRET_KEY="demo-secret-" + "0" * 40,
        JOBS_IN_PROCESS=True,
        TWILIO_ACCOUNT_SID=ACCOUNT,
        TWILIO_CLIENT=Client(ACCOUNT, AUTH_TOKEN),
        TWILIO_PHONE_NUMBER=FROM_NUMBER,
        PUBLIC_BASE_URL=BASE,
        DATABASE_URL=history_url(tmp_path),
    )
    try:
        assert runtime(app).running
        with responses.RequestsMock() as rsps:
            mock_created(rsps)
            message = queue_message(app, live_session(app))
            deadline = time.monotonic() + 20
            while message_entry(app, message.key)["status"] != "sent":
                assert time.monotonic() < deadline, "the demo's queue never sent the text"
                time.sleep(0.05)
            assert len(rsps.calls) == 1
    finally:
        runtime(app).close()


def test_worker_once_sends_what_is_queued(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    app = sending_app(make_app, tmp_path)
    message = queue_message(app, live_session(app))
    with responses.RequestsMock() as rsps:
        mock_created(rsps)
        result = app.test_cli_runner().invoke(args=["worker", "--once"])
        assert result.exit_code == 0, result.output
        assert len(rsps.calls) == 1
    assert "queued" in result.output
    assert message_entry(app, message.key)["status"] == "sent"
