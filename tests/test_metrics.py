"""``/metrics``: Prometheus counters move with real calls."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from simulator import Call


def scrape(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    values = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def test_calls_resumes_transfers_and_latency_are_counted(
    app: Flask, call: Callable[..., Call]
) -> None:
    before = scrape(app)
    c = call().dial()
    c.press("1")
    c.hang_up()
    back = call().dial()
    back.say("continue")
    back.press("0")  # not a code: no-match, then...
    back.press("0")
    back.press("0")  # ...retries used up: transfer to an agent
    assert back.ended == "enqueue"
    after = scrape(app)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("omnivoice_calls_total", start="fresh") == 1
    assert delta("omnivoice_calls_total", start="offer") == 1
    assert delta("omnivoice_resumes_total", outcome="resumed") == 1
    assert delta("omnivoice_transfers_total") == 1
    assert delta("omnivoice_active_calls") == 1  # the second call has no final status yet
    assert delta("omnivoice_webhook_seconds_count", endpoint="voice.incoming") == 2
    assert delta("omnivoice_webhook_seconds_count", endpoint="voice.answer") == 5
