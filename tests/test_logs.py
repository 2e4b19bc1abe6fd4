"""Structured logs: JSON lines, written in batches by one writer thread, none lost at exit."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.conftest import REPO
from webhooks import logs


def test_lines_are_json_in_order_and_written_by_the_writer_thread() -> None:
    stream = io.StringIO()
    handler = logs.BatchedLines(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("omnivoice.test-batched")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for n in range(50):
            logger.warning("line %d", n, extra={"call_sid": "CA1", "data": {"n": n}})
        deadline = time.monotonic() + 2
        while stream.getvalue().count("\n") < 50 and time.monotonic() < deadline:
            time.sleep(0.01)  # no flush() here: the writer thread must do it by itself
    finally:
        logger.removeHandler(handler)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["msg"] for e in entries] == [f"line {n}" for n in range(50)]
    assert entries[7]["data"] == {"n": 7} and entries[7]["call_sid"] == "CA1"


def test_pending_lines_are_written_when_the_process_exits() -> None:
    script = (
        "import logging; from webhooks import logs; logs.WRITE_EVERY = 3600; "
        "logs.configure('INFO', 'json'); logging.getLogger('omnivoice.x').info('last words')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1])["msg"] == "last words"


def test_a_forked_worker_gets_a_writer_of_its_own() -> None:
    script = (
        "import logging, os, time; from webhooks import logs\n"
        "logs.configure('INFO', 'json')\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    logging.getLogger('omnivoice.x').info('from the child')\n"
        "    time.sleep(0.5)\n"  # the child's own writer thread writes it, not an exit handler
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "from the child" in done.stderr


def _batched(name: str) -> tuple[logging.Logger, logs.BatchedLines, io.StringIO]:
    stream = io.StringIO()
    handler = logs.BatchedLines(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, handler, stream


def test_a_quick_info_line_is_the_line_logging_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    logger, handler, stream = _batched("omnivoice.test-quick")
    monkeypatch.setattr(time, "time", lambda: 1764581234.0625)  # LogRecord reads it too
    extra = {"call_sid": "CA1", "caller": "***0123", "data": {"n": 2**70, "node": "menu"}}
    logs.QuickInfo(logger)("resume_fresh", dict(extra))
    logger.info("resume_fresh", extra=dict(extra))
    handler.flush()
    quick, logged = stream.getvalue().splitlines()
    assert quick == logged
    assert json.loads(quick) == {
        "ts": "2025-12-01T09:27:14.062Z", "level": "info", "logger": "omnivoice.test-quick",
        "msg": "resume_fresh", **extra,
    }  # fmt: skip


def test_quick_info_goes_through_logging_when_anything_else_would_see_the_record() -> None:
    logger, handler, stream = _batched("omnivoice.test-quick-others")
    seen: list[logging.LogRecord] = []
    other = logging.Handler()
    other.emit = seen.append  # type: ignore[method-assign]
    logger.addHandler(other)
    quick = logs.QuickInfo(logger)
    quick("with another handler", {"call_sid": "CA1"})
    assert [r.getMessage() for r in seen] == ["with another handler"]
    logger.removeHandler(other)
    handler.addFilter(lambda record: record.getMessage() != "filtered")
    quick("filtered", {})
    quick("kept", {})
    logger.setLevel(logging.WARNING)
    quick("below the level", {})
    handler.flush()
    assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == [
        "with another handler", "kept"
    ]  # fmt: skip


def test_call_events_reach_a_log_capture_on_the_app(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from simulator import Call, FlaskTransport
    from tests.conftest import AUTH_TOKEN

    with caplog.at_level(logging.INFO, logger="omnivoice.calls"):
        call = Call(FlaskTransport(app), AUTH_TOKEN).dial()
    started = [r for r in caplog.records if r.name == "omnivoice.calls"]
    assert [r.getMessage() for r in started] == ["resume_fresh"]
    assert started[0].call_sid == call.call_sid  # type: ignore[attr-defined]
