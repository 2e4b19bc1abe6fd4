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
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from context.event_stream import Entry, EventStream
from context.history import card, customers, opt_outs
from context.history.models import (
    CallbackRequest,
    CallbackStatus,
    Conversation,
    ConversationStatus,
    Customer,
    Event,
    Evidence,
    Identity,
    IdentityKind,
    Interaction,
    Outcome,
)
from context.stream_loop import StreamLoop
from ivr.states import EventName, Status

log = logging.getLogger(__name__)

GROUP = "history"
BATCH = 200
CLAIM_AFTER = 30.0  # seconds an entry may stay unacknowledged before another writer takes it
INACTIVE_AFTER = timedelta(minutes=30)
CLOSED_AFTER = timedelta(days=7)
SWEEP_EVERY = 60.0
NO_ANSWER = {"busy", "no-answer", "failed", "canceled"}


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream = stream
        self.sessions = sessions
        self.consumer = consumer
        self.batch = batch
        self.claim_after = claim_after
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
        # ``batch`` in all, spread over the shards: a batch is committed (and its events seen)
        # only once all of it is written, so a smaller one keeps the lag short.
        per_shard = max(1, self.batch // self.stream.shards)
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
        if not entries:
            entries = self.stream.read(GROUP, self.consumer, per_shard)
        if entries:
            try:
                self._write(entries)
                self.stream.ack(GROUP, entries)
            except Exception:
                self._own_pending = True  # read them again, from this consumer's pending list
                raise
        self._sweep()
        return len(entries)

    def failure(self, exc: Exception) -> str:
        return _reason(exc)

    # ---- writing ----------------------------------------------------------------------------
    def _write(self, entries: Sequence[Entry]) -> None:
        for attempt in range(2):
            try:
                with self.sessions.begin() as db:
                    batch = _Batch(db)
                    batch.record(entries)
                self._refresh_cards(batch.touched)
                return
            except IntegrityError:
                if attempt:  # not a race with another writer: a real fault
                    raise
                log.info("history batch raced another writer; writing what is left")

    def _refresh_cards(self, customer_ids: set[int]) -> None:
        """Rebuild the cards of the customers a batch touched, under each of their caller keys.

        After the commit and before the acknowledgement: if Redis fails here, the entries are
        read again, found written, and the cards are rebuilt then.
        """
        if not customer_ids:
            return
        with self.sessions() as db, self.stream.redis.pipeline(transaction=False) as pipe:
            for callers, document in card.build_all(db, customer_ids):
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


class _Batch:
    """One transaction's worth of entries, written with a handful of statements.

    The rows every event needs (identities with their customers, conversations, interactions)
    are looked up for the whole batch at once, the missing ones are created together, and the
    events are inserted in one multi-row statement: a batch costs about the same few round
    trips whether it holds 5 events or 200.
    """

    def __init__(self, db: Session) -> None:
        self.db = db
        self.customers: dict[str, Customer | None] = {}
        self.conversations: dict[str, Conversation] = {}
        self.interactions: dict[str, Interaction] = {}
        self.touched: set[int] = set()  # customers whose card needs rebuilding

    def record(self, entries: Sequence[Entry]) -> None:
        ids = [entry.sse_id for entry in entries]
        written = set(self.db.scalars(select(Event.stream_id).where(Event.stream_id.in_(ids))))
        fresh: list[tuple[str, dict[str, Any]]] = []
        again: set[str] = set()
        for entry in entries:
            if entry.sse_id in written:
                again.add(_contact(entry.event))  # its card may be unwritten
                continue
            written.add(entry.sse_id)
            fresh.append((entry.sse_id, entry.event))
        if again:
            self.touched.update(
                cid
                for cid in self.db.scalars(
                    select(Interaction.customer_id).where(Interaction.contact_sid.in_(again))
                )
                if cid is not None
            )
        if not fresh:
            return
        self._customers(fresh)
        self._conversations(fresh)
        self._interactions(fresh)
        rows = [self._one(stream_id, event) for stream_id, event in fresh]
        self.db.execute(insert(Event), rows)
        callbacks = [
            self._callback(stream_id, event)
            for stream_id, event in fresh
            if event.get("name") == EventName.CALLBACK_REQUESTED
        ]
        if callbacks:
            self.db.execute(insert(CallbackRequest), callbacks)
        for _, event in fresh:
            if event.get("name") in _OPT_OUTS:
                self._opt_out(event)

    def _opt_out(self, event: dict[str, Any]) -> None:
        """A texted STOP or START, applied to the number's consents (a replay changes nothing)."""
        caller = str(event.get("caller") or "")
        if not caller.startswith("+"):
            return  # only a phone number can text
        granted = event.get("name") == EventName.SMS_OPTED_IN
        source = f"texted {_text(_data(event).get('keyword')) or ('START' if granted else 'STOP')}"
        if opt_outs.apply(self.db, caller, granted, source, _at(event)):
            customer = self.customers.get(caller)
            if customer is not None:
                self.touched.add(customer.id)

    def _callback(self, stream_id: str, event: dict[str, Any]) -> dict[str, Any]:
        """The row of a caller's request to be called back (shown in the agent console)."""
        data = _data(event)
        interaction = self.interactions[_contact(event)]
        return {
            "stream_id": stream_id,
            "customer_id": interaction.customer_id,
            "number": (_text(data.get("number")) or "")[:64],  # "": the caller withheld it
            "call_sid": _text(event.get("call_sid")),
            "handoff_id": (_text(data.get("handoff_id")) or "")[:64] or None,
            "reason": (_text(data.get("reason")) or "")[:200] or None,
            "status": CallbackStatus.OPEN.value,
            "at": _at(event),
        }

    def _one(self, stream_id: str, event: dict[str, Any]) -> dict[str, Any]:
        at = _at(event)
        name = str(event.get("name") or "")
        conversation = self.conversations[_ref(event)]
        interaction = self.interactions[_contact(event)]
        if at > _aware(conversation.last_activity_at):
            conversation.last_activity_at = at
        conversation.status = ConversationStatus.ACTIVE.value
        _apply(interaction, conversation, name, event, at)
        if interaction.customer_id is not None and name in _CARD_EVENTS:
            self.touched.add(interaction.customer_id)
        data = event.get("data")
        if isinstance(data, dict) and "job" in data:
            # A queued message's sealed job is for the sender; the history keeps what it says.
            data = {key: value for key, value in data.items() if key != "job"}
        return {
            "stream_id": stream_id,
            "interaction_id": interaction.id,
            "conversation_id": conversation.id,
            "at": at,
            "kind": name[:64],
            "node": _text(event.get("node")),
            "data": data if isinstance(data, dict) else {},
        }

    # ---- the rows events belong to, looked up (or made) for the whole batch -----------------
    def _customers(self, fresh: list[tuple[str, dict[str, Any]]]) -> None:
        strongest: dict[str, tuple[tuple[IdentityKind, str], Evidence, datetime]] = {}
        for _, event in fresh:
            caller = str(event.get("caller") or "")
            identity = customers.identity_of(caller, str(event.get("call_sid") or ""))
            if identity is None:
                self.customers[caller] = None
                continue
            evidence = _evidence(str(event.get("name") or ""), event)
            known = strongest.get(caller)
            if known is None or customers.STRENGTH[evidence] > customers.STRENGTH[known[1]]:
                strongest[caller] = (identity, evidence, _at(event))
        if not strongest:
            return
        found = {
            (i.kind, i.value): i
            for i in self.db.scalars(
                select(Identity)
                .where(Identity.value.in_([v for (_, v), _, _ in strongest.values()]))
                .options(selectinload(Identity.customer))
            )
        }
        for caller, ((kind, value), evidence, at) in strongest.items():
            row = found.get((kind.value, value))
            if row is None:  # a first contact: the customer and its identity, made together
                customer = Customer(created_at=at, updated_at=at)
                self.db.add(
                    Identity(
                        customer=customer, kind=kind.value, value=value,
                        evidence=evidence.value, evidence_at=at, created_at=at,
                    )
                )  # fmt: skip
                self.customers[caller] = customer
                continue
            customers.strengthen(row, evidence, at)
            self.customers[caller] = customers.current_customer(self.db, row.customer)
        # One flush for every new customer. Another writer that made one of them a moment ago
        # fails it on the unique identity: the batch is then written again and finds theirs.
        self.db.flush()

    def _conversations(self, fresh: list[tuple[str, dict[str, Any]]]) -> None:
        first: dict[str, dict[str, Any]] = {}
        for _, event in fresh:
            first.setdefault(_ref(event), event)
        latest: dict[str, Conversation] = {}
        for row in self.db.scalars(
            select(Conversation)
            .where(Conversation.ref.in_(list(first)))
            .order_by(Conversation.generation)
        ):
            latest[row.ref] = row  # the highest generation wins
        for ref, event in first.items():
            found = latest.get(ref)
            customer = self.customers.get(str(event.get("caller") or ""))
            if found is None or found.status == ConversationStatus.CLOSED:
                # new, or closed: a contact after closing starts a new conversation
                found = Conversation(
                    ref=ref,
                    generation=found.generation + 1 if found is not None else 0,
                    customer_id=customer.id if customer else None,
                    opened_at=_at(event),
                    last_activity_at=_at(event),
                )
                self.db.add(found)
            elif found.customer_id is None and customer is not None:
                found.customer_id = customer.id
            self.conversations[ref] = found
        self.db.flush()

    def _interactions(self, fresh: list[tuple[str, dict[str, Any]]]) -> None:
        first: dict[str, dict[str, Any]] = {}
        for _, event in fresh:
            first.setdefault(_contact(event), event)
        known = {
            row.contact_sid: row
            for row in self.db.scalars(
                select(Interaction).where(Interaction.contact_sid.in_(list(first)))
            )
        }
        for sid, event in first.items():
            customer = self.customers.get(str(event.get("caller") or ""))
            found = known.get(sid)
            if found is None:
                found = Interaction(
                    conversation_id=self.conversations[_ref(event)].id,
                    customer_id=customer.id if customer else None,
                    channel=_text(event.get("channel")) or "voice",
                    direction="outbound"
                    if _data(event).get("direction") == "outbound"
                    else "inbound",
                    contact_sid=sid,
                    flow_id=_text(event.get("flow")),
                    flow_version=_text(event.get("version")),
                    started_at=_at(event),
                )
                self.db.add(found)
                if customer is not None:
                    self.touched.add(customer.id)  # a new contact on the card
            elif found.customer_id is None and customer is not None:
                found.customer_id = customer.id
            self.interactions[sid] = found
        self.db.flush()


# Events that change what a customer card says (a contact's start is a new interaction).
_CARD_EVENTS = frozenset(
    {
        EventName.TOPIC, EventName.SESSION_ENDED, EventName.CALL_ENDED, EventName.HANDOFF,
        EventName.OUTBOUND_REFUSED, EventName.OUTBOUND_FAILED, EventName.OUTBOUND_UNANSWERED,
        EventName.OUTBOUND_ANSWERED, EventName.AGENT_NOTE, EventName.CALL_TAKEN,
    }
)  # fmt: skip


_OPT_OUTS = frozenset({EventName.SMS_OPTED_OUT, EventName.SMS_OPTED_IN})
_TEXTS = frozenset({EventName.SMS_RECEIVED, *_OPT_OUTS})


def _contact(event: dict[str, Any]) -> str:
    """The contact an event belongs to: its CallSid, or for an inbound text its MessageSid
    (a text is an interaction of its own, in the conversation of the call it answers)."""
    if event.get("name") in _TEXTS:
        sid = _data(event).get("message_sid")
        if isinstance(sid, str) and sid:
            return sid[:64]
    return str(event.get("call_sid") or "")


def _at(event: dict[str, Any]) -> datetime:
    try:
        return datetime.fromtimestamp(float(event.get("at") or 0), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.fromtimestamp(0, UTC)


def _ref(event: dict[str, Any]) -> str:
    return (_text(event.get("conversation")) or f"call:{event.get('call_sid') or ''}")[:64]


def _apply(
    interaction: Interaction,
    conversation: Conversation,
    name: str,
    event: dict[str, Any],
    at: datetime,
) -> None:
    """What an event says about its interaction (where it is, how it ended) and its
    conversation (what it is about)."""
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    assert isinstance(data, dict)
    if node := _text(event.get("node")):
        interaction.last_node = node[:64]
    if name == EventName.TOPIC and isinstance(data.get("topic"), str):
        conversation.topic = data["topic"][:200]
    elif name in (EventName.SESSION_ENDED, EventName.CALL_ENDED):
        if name == EventName.CALL_ENDED:
            interaction.ended_at = at
        if interaction.outcome != Outcome.MACHINE:  # a machine answered: that is the outcome
            interaction.outcome = _outcome(
                _text(data.get("status")), _text(data.get("call_status"))
            )
    elif name in _OUTBOUND_ENDINGS:
        interaction.ended_at = at
        interaction.outcome = _OUTBOUND_ENDINGS[EventName(name)]
    elif name in (EventName.AGENT_NOTE, EventName.CALL_TAKEN):
        if agent := _text(data.get("agent")):
            interaction.agent = agent[:128]
        if name == EventName.AGENT_NOTE:
            parts = [_text(data.get("disposition")), _text(data.get("text"))]
            interaction.summary = ": ".join(p for p in parts if p)[:2000] or interaction.summary
    elif name == EventName.OUTBOUND_ANSWERED and str(data.get("answered_by", "")).startswith(
        ("machine", "fax")
    ):
        interaction.outcome = Outcome.MACHINE.value


_OUTBOUND_ENDINGS = {
    EventName.OUTBOUND_REFUSED: Outcome.REFUSED.value,
    EventName.OUTBOUND_FAILED: Outcome.FAILED.value,
    EventName.OUTBOUND_UNANSWERED: Outcome.NO_ANSWER.value,
}


def _data(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    return data if isinstance(data, dict) else {}


def _outcome(status: str | None, call_status: str | None) -> str:
    if call_status in NO_ANSWER:
        return Outcome.NO_ANSWER.value
    if status == Status.TRANSFERRED:
        return Outcome.TRANSFERRED.value
    if status == Status.COMPLETED:
        return Outcome.COMPLETED.value
    return Outcome.INTERRUPTED.value


def _evidence(name: str, event: dict[str, Any]) -> Evidence:
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    assert isinstance(data, dict)
    if name == EventName.CALLER_VERIFIED:
        return Evidence.VERIFIED
    if data.get("attested") is True:
        return Evidence.STIR_A
    return Evidence.CALLER_ID


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time here is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
