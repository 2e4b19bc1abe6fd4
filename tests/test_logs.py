"""Structured logs: JSON lines, written in batches by one writer thread, none lost at exit."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time

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
