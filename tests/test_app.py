"""The app factory's safety nets: the embedded Redis stand-in is for demos only."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from flask import Flask

from app import TWILIO_TIMEOUT, _twilio_client


def test_without_redis_url_a_production_server_reports_itself_unfit(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(REDIS_CLIENT=None, REDIS_URL=None, DEV_MODE=False)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert "no REDIS_URL" in response.get_data(as_text=True)


def test_the_demo_mode_runs_on_the_stand_in(make_app: Callable[..., Flask]) -> None:
    app = make_app(REDIS_CLIENT=None, REDIS_URL=None, DEV_MODE=True)
    assert app.test_client().get("/healthz").status_code == 200
    call = app.test_cli_runner().invoke(args=["call", "--script", "1"])
    assert "confirmation code" in call.output


def test_with_redis_health_is_ok(app: Flask) -> None:
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    lines = response.get_data(as_text=True).splitlines()
    assert lines[-1] == "flows: ok: 1 flow(s) serving"
    assert lines[:-1] and all(line.startswith("redis: ok: ") for line in lines[:-1])


def test_health_sees_a_flow_added_while_running(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    app = make_app(FLOW_RELOAD_SECONDS=0.1)  # the watcher thread reloads every 0.1 s
    client = app.test_client()
    assert "flows: ok: 1 flow(s) serving\n" in client.get("/healthz").get_data(as_text=True)
    (flows_dir / "second.yaml").write_text(
        "id: second\nstart: hello\nnodes:\n  hello:\n    say: Hello.\n    hangup: true\n"
    )
    deadline = time.monotonic() + 10
    while "2 flow(s) serving" not in client.get("/healthz").get_data(as_text=True):
        assert time.monotonic() < deadline, "the new flow was never picked up"
        time.sleep(0.05)


def test_logging_set_up_leaves_other_formats_working() -> None:
    # gunicorn's own log lines name the process: configuring Omnivoice's logs must not break them
    import logging

    from webhooks import logs

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        logs.configure("INFO", "json")
    finally:
        root.handlers, root.level = handlers, level
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(process)d] [%(thread)d] %(message)s"))
    record = logging.getLogger("gunicorn.error").makeRecord(
        "gunicorn.error", logging.INFO, __file__, 1, "Worker exiting", (), None
    )
    assert handler.format(record).endswith("Worker exiting")
    assert isinstance(record.process, int) and isinstance(record.thread, int)


def test_twilio_s_rest_client_gives_up_after_a_timeout(make_app: Callable[..., Flask]) -> None:
    app = make_app(TWILIO_ACCOUNT_SID="AC" + "0" * 32)
    client = _twilio_client(app)()
    assert client.http_client.timeout == TWILIO_TIMEOUT == 10.0
