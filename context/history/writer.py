"""The history writer: the event stream, recorded in SQL in batches, never on a webhook.

It reads the stream with the consumer group ``history`` (each entry reaches one writer), writes a
batch in one transaction and acknowledges the entries only once the commit stood. So:

- **SQL down**: the commit fails, nothing is acknowledged, and the same entries are tried again
  (with a growing pause) until the database is back; the stream keeps them meanwhile.
- **A writer killed mid-batch**: its entries stay pending in the group; another writer (or the
  same one restarted) claims entries idle for ``claim_after`` seconds (``XAUTOCLAIM``).
- **Replays add nothing**: every event row carries its stream id, which is unique; a batch skips
  ids already written, and a batch that races another writer is retried and then skips them.

Each event becomes an :class:`~.models.Event` of the interaction named by its CallSid, in the
conversation named by the session's conversation id, for the customer its caller identifies;
an inbound text is an interaction of its own (by MessageSid, channel ``sms``) in the
conversation it joined. A texted STOP or START (``sms_opted_out`` / ``sms_opted_in``) is also
applied to the number's consents (:mod:`.opt_outs`): the durable path of an opt-out, which the
webhook also writes at once when the database answers.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from context.event_stream import Entry, EventStream
from context.history import card
from context.history.batch import Batch
from context.history.models import (
    Conversation,
    ConversationStatus,
)
from context.stream_loop import StreamLoop

log = logging.getLogger(__name__)

GROUP = "history"
BATCH = 800
LINGER = 0.25  # seconds from one pass to the next while no shard comes back full
CLAIM_AFTER = 30.0  # seconds an entry may stay unacknowledged before another writer takes it
INACTIVE_AFTER = timedelta(minutes=30)
CLOSED_AFTER = timedelta(days=7)
SWEEP_EVERY = 60.0


class HistoryWriter(StreamLoop):
    """Reads the event stream as one consumer of the ``history`` group and records it."""

    what = "history writer"
    trouble = "cannot write"
    recovered = "is writing again"
    idle = 0.2

    def __init__(
        self,
        stream: EventStream,
        sessions: sessionmaker[Session],
        consumer: str,
        batch: int = BATCH,
        claim_after: float = CLAIM_AFTER,
        linger_for: float = LINGER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream = stream
        self.sessions = sessions
        self.consumer = consumer
        self.batch = batch
        self.claim_after = claim_after
        self.linger_for = linger_for
        self._passed_at = 0.0
        self._full = False
        self.clock = clock
        self._group_ready = False
        self._swept_at = 0.0
        self._own_pending = True
        self._claimed_at = -float("inf")

    # ---- one pass ---------------------------------------------------------------------------
    def run_once(self) -> int:
        """Record one batch; the number of entries acknowledged (0: nothing to do).

        Raises:
            SQLAlchemyError: the database failed; nothing was acknowledged.
            redis.RedisError: the stream could not be read.
        """
        if not self._group_ready:
            self.stream.ensure_group(GROUP)
            self._group_ready = True
        # ``batch`` in all, spread over the shards. A batch is committed (and its events seen)
        # only once all of it is written; a full shard's share means more is waiting, and the
        # next pass starts at once (see :meth:`linger`).
        per_shard = max(1, self.batch // self.stream.shards)
        self._passed_at = time.monotonic()
        entries: list[Entry] = []
        if self._own_pending:  # at start, and after a failure: what this consumer was given
            entries = self.stream.read(GROUP, self.consumer, per_shard, pending=True)
            self._own_pending = bool(entries)
        now = self.clock()
        if not entries and now - self._claimed_at >= self.claim_after / 3:
            self._claimed_at = now  # a crashed writer's entries, looked for now and then
            entries = self.stream.claim(
                GROUP, self.consumer, int(self.claim_after * 1000), per_shard
            )
        replayed = bool(entries)  # given to a consumer before: some may be in SQL already
        if not entries:
            entries = self.stream.read(GROUP, self.consumer, per_shard)
        shards = Counter(entry.shard for entry in entries)
        self._full = bool(shards) and max(shards.values()) >= per_shard
        if entries:
            try:
                self._write(entries, replayed)
                self.stream.ack(GROUP, entries)
            except Exception:
                self._own_pending = True  # read them again, from this consumer's pending list
                raise
        self._sweep()
        return len(entries)

    def linger(self, done: int) -> float:
        """A batch costs the writer (and the database) much more than one of its events, and
        the writer shares the webhooks' CPU: so unless a shard came back full (more is waiting),
        it waits until ``linger_for`` after the last pass began. Events then reach SQL within
        about that long, in batches that fill with the traffic."""
        if self._full:
            return 0.0
        return max(0.0, self.linger_for - (time.monotonic() - self._passed_at))

    def failure(self, exc: Exception) -> str:
        return _reason(exc)

    # ---- writing ----------------------------------------------------------------------------
    def _write(self, entries: Sequence[Entry], replayed: bool = True) -> None:
        for attempt in range(2):
            try:
                with self.sessions.begin() as db:
                    batch = Batch(db)
                    batch.record(entries, replayed or attempt > 0)
                    # In the batch's transaction (it sees the batch's rows), kept after commit.
                    cards = card.build_all(db, batch.touched)
                self._store_cards(cards)
                return
            except IntegrityError:
                if attempt:  # not a race with another writer: a real fault
                    raise
                log.info(
                    "history batch raced another writer (or was written before); writing what is left"
                )

    def _store_cards(self, cards: list[tuple[list[str], dict[str, Any]]]) -> None:
        """Keep the cards of the customers a batch touched, under each of their caller keys.

        After the commit and before the acknowledgement: if Redis fails here, the entries are
        read again, found written, and the cards are rebuilt then.
        """
        if not cards:
            return
        with self.stream.redis.pipeline(transaction=False) as pipe:
            for callers, document in cards:
                encoded = orjson.dumps(document)
                for caller in callers:
                    pipe.set(self.stream.keys.card(caller), encoded, ex=card.CARD_TTL)
            pipe.execute()

    def _sweep(self) -> None:
        """Conversations idle for long become inactive, then closed (at most once a minute)."""
        now = self.clock()
        if now - self._swept_at < SWEEP_EVERY:
            return
        self._swept_at = now
        sweep(self.sessions, datetime.fromtimestamp(now, UTC))


def sweep(sessions: sessionmaker[Session], now: datetime) -> None:
    """Move idle conversations on: active → inactive → closed."""
    with sessions.begin() as db:
        db.execute(
            update(Conversation)
            .where(
                Conversation.status == ConversationStatus.ACTIVE.value,
                Conversation.last_activity_at < now - INACTIVE_AFTER,
            )
            .values(status=ConversationStatus.INACTIVE.value)
        )
        db.execute(
            update(Conversation)
            .where(
                Conversation.status == ConversationStatus.INACTIVE.value,
                Conversation.last_activity_at < now - CLOSED_AFTER,
            )
            .values(status=ConversationStatus.CLOSED.value, closed_at=now)
        )


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
