"""The outgoing handoff webhook: every handoff bundle POSTed, signed, to ``HANDOFF_WEBHOOK_URL``.

A consumer of the event stream (group ``handoff-webhooks``, beside the history writer's) that
posts the bundle of each ``handoff`` event as JSON, signed the Standard Webhooks way
(``webhook-id`` is the handoff id, so receivers deduplicate on it; ``webhook-timestamp``;
``webhook-signature`` made with ``HANDOFF_WEBHOOK_SECRET``). Never on a caller's webhook: it runs
in ``flask --app app worker`` (or in the demo's own process). Delivery is at least once:

- Other events are acknowledged at once.
- A 2xx is a delivery: acknowledged.
- A transient failure (no connection, a timeout, 408, 429, 5xx) leaves the entry pending in the
  group; it is taken again (``XCLAIM``) once it has been idle for a pause that doubles with each
  delivery (``first_retry``, up to ``max_pause``), by whichever consumer looks first. After
  ``give_up_after`` seconds (or ``max_attempts`` tries) it is logged as given up and acknowledged.
- Any other answer (a 3xx: redirects are not followed; a 4xx) will not get better by trying
  again: logged as a permanent failure and acknowledged.
- A consumer killed between reading and acknowledging leaves its entries pending: another one
  takes them after ``first_retry``, so a receiver may get a handoff twice (same ``webhook-id``).
  A consumer still working through a batch keeps its entries (:meth:`EventStream.keep`) so none
  is taken from it meanwhile.

The log names the handoff, the status and the receiver's host; never the secret or the body.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis
import requests
from standardwebhooks import Webhook

from context.event_stream import Entry, EventStream, Pending
from context.stream_loop import StreamLoop
from ivr.errors import ConfigError
from ivr.states import EventName

log = logging.getLogger(__name__)

GROUP = "handoff-webhooks"
TIMEOUT = 5.0
FIRST_RETRY = 60.0  # seconds before a failed (or a crashed consumer's) delivery is tried again
MAX_PAUSE = 3600.0
GIVE_UP_AFTER = 24 * 3600.0
MAX_ATTEMPTS = 40
BATCH = 100  # entries read per shard in one pass (most are not handoffs: acknowledged at once)
SECRET_PREFIX = "whsec_"
SECRET_BYTES = (24, 64)  # what Standard Webhooks asks of a secret
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class Delivery(StrEnum):
    """How one attempt to deliver a bundle went."""

    DELIVERED = "delivered"
    RETRY = "retry"  # a transient failure: try again later
    REFUSED = "refused"  # a permanent failure: trying again will not help


@dataclass(frozen=True)
class WebhookTarget:
    """Where bundles go and the secret they are signed with."""

    url: str
    secret: str

    @property
    def host(self) -> str:
        """The receiver's host, the only part of the URL the log shows (it may hold a token)."""
        return urlsplit(self.url).netloc.rpartition("@")[2]


def target_of(config: Mapping[str, Any]) -> WebhookTarget | None:
    """The webhook ``config`` asks for (``HANDOFF_WEBHOOK_URL`` and ``_SECRET``), or ``None``.

    Raises:
        ConfigError: a URL without a usable secret, or the other way round, or a URL that is not
            https (plain http only to this machine, or in dev mode).
    """
    url = (config.get("HANDOFF_WEBHOOK_URL") or "").strip()
    secret = (config.get("HANDOFF_WEBHOOK_SECRET") or "").strip()
    if not url:
        if secret:
            raise ConfigError(
                "HANDOFF_WEBHOOK_URL",
                None,
                "HANDOFF_WEBHOOK_SECRET is set, so handoffs are meant to be posted somewhere: "
                "set HANDOFF_WEBHOOK_URL to the receiver's https URL (or unset the secret).",
            )
        return None
    parts = urlsplit(url)
    loopback = (parts.hostname or "") in LOOPBACK
    if not parts.hostname or parts.scheme not in ("https", "http"):
        raise ConfigError("HANDOFF_WEBHOOK_URL", url, "it must be an https:// URL with a host.")
    if parts.scheme == "http" and not (loopback or config.get("DEV_MODE")):
        raise ConfigError(
            "HANDOFF_WEBHOOK_URL",
            url,
            "bundles describe callers, so they are only sent over https (plain http is allowed "
            "to localhost, or in dev mode).",
        )
    return WebhookTarget(url, check_secret(secret))


def check_secret(raw: str) -> str:
    """``raw`` if it is a Standard Webhooks secret: ``whsec_`` and 24 to 64 bytes in base64.

    Raises:
        ConfigError: it is missing or malformed (the message never repeats it).
    """
    name = "HANDOFF_WEBHOOK_SECRET"
    how = (
        "it must be whsec_ followed by 24 to 64 random bytes in base64, e.g. python -c "
        "\"import base64, secrets; print('whsec_' + base64.b64encode(secrets.token_bytes(32))"
        '.decode())"; give the receiver the same value.'
    )
    if not raw:
        raise ConfigError(name, None, f"HANDOFF_WEBHOOK_URL is set, so bundles are signed: {how}")
    shown = "whsec_..." if raw.startswith(SECRET_PREFIX) else "(not whsec_...)"
    if not raw.startswith(SECRET_PREFIX):
        raise ConfigError(name, shown, how)
    try:
        key = base64.b64decode(raw.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(name, shown, f"its base64 part does not decode: {how}") from None
    if not SECRET_BYTES[0] <= len(key) <= SECRET_BYTES[1]:
        raise ConfigError(name, shown, f"it holds {len(key)} bytes: {how}")
    return raw


def is_transient(status: int) -> bool:
    """Whether an HTTP status may be different if the same request is made later."""
    return status in (408, 429) or status >= 500


class HandoffWebhooks(StreamLoop):
    """One consumer of the ``handoff-webhooks`` group: reads, posts, retries, acknowledges."""

    what = "handoff webhooks"
    idle = 0.5

    def __init__(
        self,
        stream: EventStream,
        target: WebhookTarget,
        consumer: str,
        http: requests.Session | None = None,
        *,
        timeout: float = TIMEOUT,
        first_retry: float = FIRST_RETRY,
        max_pause: float = MAX_PAUSE,
        give_up_after: float = GIVE_UP_AFTER,
        max_attempts: int = MAX_ATTEMPTS,
        batch: int = BATCH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream = stream
        self.target = target
        self.consumer = consumer
        self.http = http or requests.Session()
        self.signer = Webhook(target.secret)
        self.timeout = timeout
        self.first_retry = first_retry
        self.max_pause = max_pause
        self.give_up_after = give_up_after
        self.max_attempts = max_attempts
        self.batch = batch
        self.clock = clock
        self._group_ready = False

    # ---- one pass ---------------------------------------------------------------------------
    def run_once(self) -> int:
        """Handle what is due: retries first, then new entries; the number acknowledged.

        Raises:
            redis.RedisError: the stream could not be read; nothing was lost (entries stay
                pending or unread).
        """
        if not self._group_ready:
            self.stream.ensure_group(GROUP)
            self._group_ready = True
        try:
            retried = self._handle(*self._due())
            return retried + self._handle(self.stream.read(GROUP, self.consumer, self.batch), {})
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):  # a shard expired and took the group with it
                self._group_ready = False
            raise

    # ---- deciding ---------------------------------------------------------------------------
    def pause_after(self, deliveries: int) -> float:
        """Seconds an entry given ``deliveries`` times waits before the next try."""
        return min(self.first_retry * 2 ** max(0, deliveries - 1), self.max_pause)

    def _due(self) -> tuple[list[Entry], dict[tuple[int, str], int]]:
        """Pending entries whose pause is over (a failed delivery's, or a crashed consumer's),
        taken for this consumer; each entry's pause is checked again by the claim itself, so two
        consumers never take the same one. With each, the number of the attempt it is about to
        get."""
        waiting = self.stream.pending(GROUP, int(self.first_retry * 1000), self.batch)
        by_pause: dict[int, list[Pending]] = {}
        for item in waiting:
            pause_ms = int(self.pause_after(item.deliveries) * 1000)
            if item.idle_ms >= pause_ms:
                by_pause.setdefault(pause_ms, []).append(item)
        taken: list[Entry] = []
        for pause_ms, items in by_pause.items():
            taken.extend(self.stream.claim_ids(GROUP, self.consumer, pause_ms, items))
        return taken, {(item.shard, item.id): item.deliveries + 1 for item in waiting}

    def _handle(self, entries: Sequence[Entry], attempts: Mapping[tuple[int, str], int]) -> int:
        """Deliver the handoffs among ``entries``; acknowledge all but those to try again.

        A batch that takes long (a slow receiver) acknowledges what it finished and keeps the
        rest now and then, so no other consumer takes them for a crashed one's: that holds while
        ``timeout`` is under two thirds of ``first_retry``.
        """
        done: list[Entry] = []
        acknowledged = 0
        kept_at = time.monotonic()
        for index, entry in enumerate(entries):
            if time.monotonic() - kept_at > self.first_retry / 3:
                acknowledged += self.stream.ack(GROUP, done)
                done = []
                self.stream.keep(GROUP, self.consumer, entries[index:])  # still ours
                kept_at = time.monotonic()
            if self._settled(entry, attempts.get((entry.shard, entry.id), 1)):
                done.append(entry)
        return acknowledged + self.stream.ack(GROUP, done)

    def _settled(self, entry: Entry, attempt: int) -> bool:
        """Try ``entry`` once; whether it is finished with (delivered, refused or given up)."""
        event = entry.event
        if event.get("name") != EventName.HANDOFF:
            return True
        bundle = (event.get("data") or {}).get("bundle")
        if not isinstance(bundle, dict) or not isinstance(bundle.get("id"), str):
            log.error("handoff event %s carries no bundle: nothing to post", entry.sse_id)
            return True
        handoff = bundle["id"]
        age = self.clock() - int(entry.id.partition("-")[0]) / 1000
        if age > self.give_up_after:
            log.error(
                "handoff %s gave up: not delivered to %s within %.0f s",
                handoff,
                self.target.host,
                self.give_up_after,
            )
            return True
        outcome, why = self.deliver(bundle)
        if outcome is Delivery.DELIVERED:
            log.info("handoff %s delivered to %s (attempt %d)", handoff, self.target.host, attempt)
            return True
        if outcome is Delivery.REFUSED:
            log.error("handoff %s refused by %s: %s; not retried", handoff, self.target.host, why)
            return True
        if attempt >= self.max_attempts:
            log.error(
                "handoff %s gave up after %d attempts to %s: %s",
                handoff,
                attempt,
                self.target.host,
                why,
            )
            return True
        log.warning(
            "handoff %s not delivered to %s (attempt %d): %s; will retry in %.3g s",
            handoff,
            self.target.host,
            attempt,
            why,
            self.pause_after(attempt),
        )
        return False

    # ---- posting ----------------------------------------------------------------------------
    def deliver(self, bundle: Mapping[str, Any]) -> tuple[Delivery, str]:
        """POST ``bundle`` once, signed; how it went and why, in words fit for the log."""
        body = orjson.dumps(bundle).decode()
        now = datetime.fromtimestamp(self.clock(), UTC)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Omnivoice-Webhooks/1",
            "webhook-id": str(bundle["id"]),
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self.signer.sign(str(bundle["id"]), now, body),
        }
        try:
            answer = self.http.post(
                self.target.url,
                data=body.encode(),
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            return Delivery.RETRY, type(exc).__name__  # the text may hold the URL
        answer.close()
        if 200 <= answer.status_code < 300:
            return Delivery.DELIVERED, f"HTTP {answer.status_code}"
        if is_transient(answer.status_code):
            return Delivery.RETRY, f"HTTP {answer.status_code}"
        return Delivery.REFUSED, f"HTTP {answer.status_code}"
