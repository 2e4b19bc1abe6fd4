"""The outbox relay: ``message_queued`` events from the event stream, onto the job queue.

A consumer of the event stream (group ``message-jobs``, beside the history writer's and the
handoff webhook's). Each ``message_queued`` event's job is opened (to check it) and enqueued as a
Dramatiq message whose id is the message's key; the entry is acknowledged only once the broker
took it, so a relay killed in between leaves it pending, and another relay (or this one,
restarted) takes it again after ``reclaim_after`` seconds (``XAUTOCLAIM``). Enqueuing twice is
harmless: the sender's claim on the key sends once.

A job that cannot be opened (sealed with a key no longer configured, tampered with, of an
unknown version) is logged, recorded as ``message_failed`` on its session and acknowledged:
never retried forever. Other events are acknowledged at once. A broker that is down leaves the
entries pending; they are tried again after ``reclaim_after``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import redis

from context.event_stream import Entry, EventStream
from context.sealing import Sealer
from context.stream_loop import StreamLoop
from conversation.message_jobs import open_job
from ivr import messages
from ivr.states import EventName
from jobs.outcomes import Outcomes

log = logging.getLogger(__name__)

GROUP = "message-jobs"
RECLAIM_AFTER = 30.0  # seconds an entry stays pending before another relay takes it
BATCH = 100

Enqueue = Callable[[str, str], None]  # (key, sealed job)


class OutboxRelay(StreamLoop):
    """One consumer of the ``message-jobs`` group."""

    what = "the outbox relay"
    idle = 0.2

    def __init__(
        self,
        stream: EventStream,
        sealer: Sealer,
        enqueue: Enqueue,
        outcomes: Outcomes,
        consumer: str,
        *,
        reclaim_after: float = RECLAIM_AFTER,
        batch: int = BATCH,
    ) -> None:
        self.stream = stream
        self.sealer = sealer
        self.enqueue = enqueue
        self.outcomes = outcomes
        self.consumer = consumer
        self.reclaim_after = reclaim_after
        self.batch = batch
        self._group_ready = False

    def run_once(self) -> int:
        """Relay what is due (a crashed relay's entries first, then new ones); the number
        acknowledged.

        Raises:
            redis.RedisError: the stream cannot be read; nothing was lost.
        """
        if not self._group_ready:
            self.stream.ensure_group(GROUP)
            self._group_ready = True
        try:
            stale = self.stream.claim(
                GROUP, self.consumer, int(self.reclaim_after * 1000), self.batch
            )
            done = self._handle(stale)
            return done + self._handle(self.stream.read(GROUP, self.consumer, self.batch))
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):  # a shard expired and took the group with it
                self._group_ready = False
            raise

    def _handle(self, entries: Sequence[Entry]) -> int:
        done = [entry for entry in entries if self._relayed(entry)]
        return self.stream.ack(GROUP, done)

    def _relayed(self, entry: Entry) -> bool:
        """Enqueue ``entry``'s message; whether the entry is finished with."""
        event = entry.event
        if event.get("name") != EventName.MESSAGE_QUEUED:
            return True
        data: dict[str, Any] = event.get("data") or {}
        key = str(data.get("key") or "")
        try:
            job = open_job(data, self.sealer)
        except Exception as exc:  # SealBroken, an unknown version, not JSON
            log.error(
                "message %s cannot be opened (%s: %s): recorded as failed, not sent",
                key or "(no key)",
                type(exc).__name__,
                exc,
            )
            known = {
                "key": key,
                "caller": event.get("caller"),
                "call_sid": event.get("call_sid"),
                "flow": event.get("flow"),  # its flow's session, also when kept aside
                "channel": data.get("channel"),
                "node": data.get("node"),
            }
            try:
                self.outcomes.record(
                    known, messages.FAILED, error="the message could not be opened", force=True
                )
            except Exception as record_exc:  # the session's Redis is down: still never retried
                log.error("message %s: its failure was not recorded: %s", key, record_exc)
            return True
        try:
            self.enqueue(str(job["key"]), str(data["job"]))
        except Exception as exc:  # the broker is down: the entry stays pending
            log.error("message %s not queued yet (the job queue refused: %s)", key, exc)
            return False
        log.info("message %s queued for sending", key)
        return True
