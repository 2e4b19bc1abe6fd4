"""The handoff webhook as a running thing: built from the app's settings, run in a thread of
``flask --app app worker`` or of the demo's web process, stopped cleanly."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import requests

from context.event_stream import EventStream
from context.history.runtime import consumer_name
from conversation.handoff_webhooks import HandoffWebhooks, target_of

log = logging.getLogger(__name__)


def build(config: Mapping[str, Any], stream: EventStream, role: str) -> HandoffWebhooks | None:
    """The webhook consumer ``config`` asks for (``None``: no ``HANDOFF_WEBHOOK_URL``).

    Raises:
        ConfigError: the URL or the secret is unusable.
    """
    target = target_of(config)
    if target is None:
        return None
    http = config.get("HANDOFF_WEBHOOK_HTTP") or requests.Session()  # tests pass their own
    return HandoffWebhooks(stream, target, consumer_name(f"webhooks-{role}"), http)


class WebhookThread:
    """Runs a consumer in a daemon thread until :meth:`close` (or until ``stop`` is set, when
    it shares an event with something else, as the worker does with its signal handler)."""

    def __init__(self, webhooks: HandoffWebhooks, stop: threading.Event | None = None) -> None:
        self.webhooks = webhooks
        self.stop = stop or threading.Event()
        self.thread = threading.Thread(
            target=webhooks.run, args=(self.stop,), name="handoff-webhooks", daemon=True
        )

    def start(self) -> WebhookThread:
        """Start delivering."""
        self.thread.start()
        log.info(
            "handoff webhooks to %s running in this process (consumer %s)",
            self.webhooks.target.host,
            self.webhooks.consumer,
        )
        return self

    def close(self) -> None:
        """Stop after the attempt in progress (at most the HTTP timeout)."""
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=self.webhooks.timeout + 5)
