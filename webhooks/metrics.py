"""Prometheus metrics, served at ``/metrics``.

Webhook latency per endpoint, calls started, active calls, resumes, transfers and fallbacks.
Under gunicorn with several workers, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory
shared by the workers so ``/metrics`` sums them (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Blueprint, Flask, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

from ivr import resume

WEBHOOK_SECONDS = Histogram(
    "omnivoice_webhook_seconds",
    "Time to answer a Twilio webhook.",
    ["endpoint"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0),
)
CALLS = Counter("omnivoice_calls_total", "Calls that reached a flow.", ["start"])
ACTIVE_CALLS = Gauge(
    "omnivoice_active_calls", "Calls in progress (started, no final status yet).",
    multiprocess_mode="livesum",
)  # fmt: skip
RESUMES = Counter("omnivoice_resumes_total", "Resume decisions.", ["outcome"])
TRANSFERS = Counter("omnivoice_transfers_total", "Callers handed to a person.")
ERRORS = Counter("omnivoice_errors_total", "Webhooks answered with the fallback.", ["kind"])

_RESUME_OUTCOMES = {
    "resumed": "resumed",
    "resume_declined": "declined",
    "resume_code_failed": "code_failed",
    "transferred_caller_back": "transferred_back",
}

_START_KINDS = frozenset(
    (resume.FRESH, resume.OFFER, resume.CONTINUE, resume.TRANSFERRED_ROUTE, resume.ASK_CODE)
)

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """The metrics in Prometheus' text format."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest()
    return Response(body, 200, mimetype=CONTENT_TYPE_LATEST)


def observe_note(name: str, data: dict[str, Any]) -> None:
    """Count what a call event means for the dashboards."""
    start = name.removeprefix("resume_")
    if start in _START_KINDS:  # webhooks.calls notes "resume_<plan kind>" as each call starts
        CALLS.labels(start=start).inc()
        ACTIVE_CALLS.inc()
    elif name in _RESUME_OUTCOMES:
        RESUMES.labels(outcome=_RESUME_OUTCOMES[name]).inc()
    elif name == "session_ended" and data.get("status") == "transferred":
        TRANSFERS.inc()
    elif name in ("call_ended", "call_superseded"):  # a superseded call's end is not recorded
        ACTIVE_CALLS.dec()


def install(app: Flask) -> None:
    """Serve ``/metrics`` (the voice webhooks time themselves, see :mod:`webhooks.voice`)."""
    app.register_blueprint(bp)
