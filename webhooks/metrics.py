"""Prometheus metrics, served at ``/metrics``.

Webhook latency per endpoint, calls started, active calls, resumes, transfers and fallbacks.
Under gunicorn with several workers, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory
shared by the workers so ``/metrics`` sums them (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
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

from conversation.events import ConversationEvent
from ivr.states import EventName, PlanKind, Status, start_event

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
    EventName.RESUMED: "resumed",
    EventName.RESUME_DECLINED: "declined",
    EventName.RESUME_CODE_FAILED: "code_failed",
    EventName.TRANSFERRED_CALLER_BACK: "transferred_back",
}
_STARTS = {start_event(kind): kind.value for kind in PlanKind}


@functools.cache
def _started(start: str) -> Any:
    """CALLS' child for ``start``, resolved on first use in this process."""
    return CALLS.labels(start=start)


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


class MetricsSink:
    """The event sink that counts what events mean for the dashboards."""

    def emit(self, events: Sequence[ConversationEvent]) -> None:
        for event in events:
            observe(event.name, event.data)


def observe(name: EventName, data: Mapping[str, Any]) -> None:
    """Count one event."""
    start = _STARTS.get(name)
    if start is not None:  # every call that reaches a flow records how it started
        _started(start).inc()
        ACTIVE_CALLS.inc()
    elif name in _RESUME_OUTCOMES:
        RESUMES.labels(outcome=_RESUME_OUTCOMES[name]).inc()
    elif name == EventName.SESSION_ENDED and data.get("status") == Status.TRANSFERRED:
        TRANSFERS.inc()
    elif name in (EventName.CALL_ENDED, EventName.CALL_SUPERSEDED):
        ACTIVE_CALLS.dec()  # a superseded call's end is not recorded


def install(app: Flask) -> None:
    """Serve ``/metrics`` (the voice webhooks time themselves, see :mod:`webhooks.voice`)."""
    app.register_blueprint(bp)
