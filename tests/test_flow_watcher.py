"""Flow reloads off the request path: the watcher thread, the size limit and its refusal.

Webhooks go through the real front with Twilio-signed requests on real Redis while flow files
change underneath; every bound on a webhook's time is relative to a webhook measured in the
same test with nothing changing.
"""

from __future__ import annotations

import itertools
import logging
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from bench.flow_scaling import flow_yaml
from ivr import watcher
from ivr.catalog import Catalog
from ivr.flow import load_flow_text
from tests.conftest import on_topologies
from tests.support_twilio import form, post, spoken, twiml

single = on_topologies("single")  # reloading touches no store: one topology is enough

PERIOD = 0.2  # the watcher's period in these tests
THIRTY_MB = 30 * 1024 * 1024
ORIGINAL = "For flight status, press 1"
CALLERS = itertools.count(2_000_000 + uuid.uuid4().int % 7_000_000)


def dial(app: Flask) -> tuple[float, str]:
    """One signed ``POST /voice`` for a new call and caller: its duration and what it says."""
    caller = f"+1415{next(CALLERS)}"  # a new caller: no resume offer
    params = form("CA" + uuid.uuid4().hex, From=caller)
    started = time.perf_counter()
    response = post(app.test_client(), "/voice", params)
    took = time.perf_counter() - started
    return took, " ".join(spoken(twiml(response)))


def normal_webhook(app: Flask) -> float:
    """The median time of a webhook while no flow file changes."""
    return statistics.median(dial(app)[0] for _ in range(20))


def replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` at once, as editors and deploys do (write aside, rename)."""
    aside = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    aside.write_text(text, encoding="utf-8")
    os.replace(aside, path)


def wait_for(predicate: Callable[[], bool], seconds: float) -> float:
    """Poll ``predicate`` until it holds; return how long that took (fails after ``seconds``)."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < seconds, "the condition never held"
        time.sleep(0.02)
    return time.monotonic() - started


@single
def test_a_30_mb_flow_file_stalls_no_webhook_and_is_refused(
    make_app: Callable[..., Flask], flows_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(FLOW_RELOAD_SECONDS=PERIOD)
    normal = normal_webhook(app)
    path = flows_dir / "airline.yaml"
    original = path.read_text(encoding="utf-8")
    padding = ("# " + "x" * 1021 + "\n") * (THIRTY_MB // 1024)
    edited = original.replace(ORIGINAL, "For arrivals, press 1") + padding
    assert len(edited.encode()) > THIRTY_MB

    writer = threading.Thread(target=replace, args=(path, edited))
    slowest = 0.0
    with caplog.at_level(logging.ERROR, logger="ivr.catalog"):
        writer.start()
        deadline = time.monotonic() + 10 * PERIOD + 1.0  # several periods of the watcher
        while time.monotonic() < deadline:
            took, said = dial(app)
            slowest = max(slowest, took)
            assert ORIGINAL in said  # the last good version answers throughout
        writer.join()
        health = app.test_client().get("/healthz")

    assert slowest < 50 * normal + 0.25, (slowest, normal)
    assert health.status_code == 200
    lines = health.get_data(as_text=True).splitlines()
    assert f"degraded: refused: {path}:1:1: error: The file is " in "\n".join(lines)
    [refusal] = [line for line in lines if line.startswith("degraded: ")]
    assert (
        "bytes, over the limit of 1,048,576 bytes (FLOW_MAX_BYTES); split the flow into "
        "several files or raise the limit. (its last good version "
    ) in refusal
    assert refusal.endswith(" still serves)")  # the version before the edit
    assert f"{len(edited.encode()):,} bytes" in refusal
    logged = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"{path}:1:1: error: The file is ") for m in logged)
    assert any(m.startswith(f"{path} refused; still serving version ") for m in logged)


@single
def test_a_big_flow_under_the_limit_loads_beside_webhooks(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    text = flow_yaml(5000)
    started = time.perf_counter()
    load_flow_text(text, "big.yaml", "big")
    load_time = time.perf_counter() - started
    app = make_app(FLOW_RELOAD_SECONDS=PERIOD)
    normal = normal_webhook(app)
    catalog = app.extensions["omnivoice.catalog"]

    replace(flows_dir / "big.yaml", text)
    slowest = 0.0
    started = time.monotonic()
    while len(catalog.flows()) < 2:
        assert time.monotonic() - started < 30, "the big flow was never loaded"
        took, said = dial(app)
        slowest = max(slowest, took)
        assert ORIGINAL in said

    # No webhook waited for the load: each took a small part of it (a webhook that ran the
    # load itself, as reloads used to, takes all of it).
    assert slowest < max(load_time / 2, 20 * normal), (slowest, load_time, normal)


@single
def test_a_normal_edit_is_picked_up_within_the_watchers_period(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    app = make_app(FLOW_RELOAD_SECONDS=PERIOD)
    assert ORIGINAL in dial(app)[1]
    path = flows_dir / "airline.yaml"
    replace(path, path.read_text(encoding="utf-8").replace(ORIGINAL, "For arrivals, press 1"))
    took = wait_for(lambda: "For arrivals, press 1" in dial(app)[1], seconds=10)
    assert took < PERIOD + 1.0  # a period, plus the watcher's tick and a loaded machine
    assert ORIGINAL not in dial(app)[1]


@single
def test_no_watcher_reloads_nothing_on_requests(
    make_app: Callable[..., Flask], flows_dir: Path
) -> None:
    app = make_app(FLOW_RELOAD_SECONDS=0)  # 0: flows are read at start only
    path = flows_dir / "airline.yaml"
    replace(path, path.read_text(encoding="utf-8").replace(ORIGINAL, "For arrivals, press 1"))
    time.sleep(0.3)
    assert ORIGINAL in dial(app)[1]


def test_the_size_limit_is_the_files_bytes(tmp_path: Path) -> None:
    text = "id: small\nstart: hello\nnodes:\n  hello:\n    say: Hello.\n    hangup: true\n"
    path = tmp_path / "small.yaml"
    path.write_text(text)
    size = len(text.encode())
    assert Catalog(tmp_path, max_bytes=size).refresh() == []
    [problem] = Catalog(tmp_path, max_bytes=size - 1).refresh()
    assert str(problem) == (
        f"{path}:1:1: error: The file is {size} bytes, over the limit of {size - 1} bytes "
        "(FLOW_MAX_BYTES); split the flow into several files or raise the limit."
    )


@single
def test_flows_validate_applies_the_limit(make_app: Callable[..., Flask], flows_dir: Path) -> None:
    app = make_app(FLOW_MAX_BYTES=100)
    result = app.test_cli_runner().invoke(
        args=["flows", "validate", str(flows_dir / "airline.yaml")]
    )
    assert result.exit_code == 1
    assert "airline.yaml:1:1: error: The file is " in result.output
    assert "over the limit of 100 bytes (FLOW_MAX_BYTES)" in result.output


def test_a_forked_process_keeps_watching_on_its_own_thread(tmp_path: Path) -> None:
    text = "id: main\nstart: hello\nnodes:\n  hello:\n    say: Before.\n    hangup: true\n"
    path = tmp_path / "main.yaml"
    path.write_text(text)
    catalog = Catalog(tmp_path)
    catalog.refresh()
    watcher.watch(catalog, 0.05)
    readable, writable = os.pipe()
    child = os.fork()  # as gunicorn forks its workers from a master that loaded the app
    if child == 0:
        try:
            replace(path, text.replace("Before.", "After."))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if catalog.get("main").node("hello").say == "After.":  # type: ignore[union-attr]
                    os.write(writable, b"picked up")
                    break
                time.sleep(0.02)
        finally:
            os._exit(0)
    os.close(writable)
    os.waitpid(child, 0)
    assert os.read(readable, 100) == b"picked up"
    os.close(readable)
