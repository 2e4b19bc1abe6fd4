"""One transaction's worth of event-stream entries, written with a handful of SQL statements.

The rows every event needs (identities with their customers, conversations, interactions) are
looked up for the whole batch at once, the missing ones are inserted together, the events go in
with one ``COPY`` (PostgreSQL) or one multi-row ``INSERT``, and what the events changed on their
interactions and conversations is written back with one ``UPDATE`` per table and set of
columns. A batch costs about the same few round trips whether it holds 5 events or 200.

It is written with SQLAlchemy Core, not the ORM: the writer shares its machine with the
webhooks, and the ORM's unit of work cost more CPU per event than the SQL itself. The rare
paths (a customer merged into another, a texted STOP) use the ORM helpers they share with the
rest of the history.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

import orjson
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from context.event_stream import Entry
from context.history import customers, opt_outs
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
    aware,
)
from ivr.states import EventName, Status

NO_ANSWER = {"busy", "no-answer", "failed", "canceled"}


class _Row:
    """A row as the batch sees it: :meth:`changes` is what to write back (the columns whose
    values differ from those it was read or made with)."""

    columns: ClassVar[tuple[str, ...]]
    id: int
    customer_id: int | None
    loaded: tuple[Any, ...]

    def __post_init__(self) -> None:
        self.loaded = tuple(getattr(self, name) for name in self.columns)

    def adopt(self, customer_id: int | None) -> None:
        """A row made before its customer was known belongs to them now."""
        if self.customer_id is None and customer_id is not None:
            self.customer_id = customer_id

    def changes(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name, before in zip(self.columns, self.loaded, strict=True)
            if getattr(self, name) != before
        }


@dataclass
class _Conversation(_Row):
    columns: ClassVar[tuple[str, ...]] = ("customer_id", "status", "topic", "last_activity_at")
    id: int
    customer_id: int | None
    status: str
    topic: str | None
    last_activity_at: datetime
    loaded: tuple[Any, ...] = field(default=(), repr=False)


@dataclass
class _Interaction(_Row):
    columns: ClassVar[tuple[str, ...]] = (
        "customer_id", "last_node", "ended_at", "outcome", "agent", "summary",
    )  # fmt: skip
    id: int
    customer_id: int | None
    last_node: str | None = None
    ended_at: datetime | None = None
    outcome: str | None = None
    agent: str | None = None
    summary: str | None = None
    loaded: tuple[Any, ...] = field(default=(), repr=False)


# The batch's look-ups, built once: a batch only binds its values.
_WRITTEN = select(Event.stream_id).where(Event.stream_id.in_(bindparam("ids", expanding=True)))
_CUSTOMERS_OF = select(Interaction.customer_id).where(
    Interaction.contact_sid.in_(bindparam("sids", expanding=True))
)
_IDENTITIES = (
    select(
        Identity.id, Identity.kind, Identity.value, Identity.customer_id, Identity.evidence,
        Customer.merged_into_id,
    )
    .join(Customer, Customer.id == Identity.customer_id)
    .where(Identity.value.in_(bindparam("values", expanding=True)))
)  # fmt: skip
_CONVERSATIONS = (
    select(
        Conversation.id, Conversation.ref, Conversation.generation, Conversation.customer_id,
        Conversation.status, Conversation.topic, Conversation.last_activity_at,
    )
    .where(Conversation.ref.in_(bindparam("refs", expanding=True)))
    .order_by(Conversation.generation)
)  # fmt: skip
_INTERACTIONS = select(
    Interaction.id, Interaction.contact_sid, Interaction.customer_id, Interaction.last_node,
    Interaction.ended_at, Interaction.outcome, Interaction.agent, Interaction.summary,
).where(Interaction.contact_sid.in_(bindparam("sids", expanding=True)))  # fmt: skip


class Batch:
    """Records entries in the transaction of ``db``; ``touched`` names the customers whose
    card needs rebuilding once it commits."""

    def __init__(self, db: Session) -> None:
        self.db = db
        self.customers: dict[str, int | None] = {}  # caller key -> customer id
        self.conversations: dict[str, _Conversation] = {}
        self.interactions: dict[str, _Interaction] = {}
        self.touched: set[int] = set()

    def record(self, entries: Sequence[Entry], replayed: bool = True) -> None:
        """Write ``entries``; ``replayed=False`` says none of them can be in SQL yet (the
        stream gave them to this group for the first time), so the look-up of ids already
        written is skipped: a row there anyway fails the batch on the unique stream id, and
        it is written again as a replay."""
        ids = [entry.sse_id for entry in entries]
        written = set(self.db.scalars(_WRITTEN, {"ids": ids})) if replayed else set()
        fresh: list[tuple[str, dict[str, Any]]] = []
        again: set[str] = set()
        for entry in entries:
            if entry.sse_id in written:
                again.add(contact(entry.event))  # its card may be unwritten
                continue
            written.add(entry.sse_id)
            fresh.append((entry.sse_id, entry.event))
        if again:
            self.touched.update(
                cid
                for cid in self.db.scalars(_CUSTOMERS_OF, {"sids": sorted(again)})
                if cid is not None
            )
        if not fresh:
            return
        self._customers(fresh)
        self._conversations(fresh)
        self._interactions(fresh)
        insert_events(self.db, [self._one(stream_id, event) for stream_id, event in fresh])
        self._write_back()
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

    # ---- one event --------------------------------------------------------------------------
    def _one(self, stream_id: str, event: dict[str, Any]) -> dict[str, Any]:
        at = _at(event)
        name = str(event.get("name") or "")
        conversation = self.conversations[_ref(event)]
        interaction = self.interactions[contact(event)]
        if at > conversation.last_activity_at:
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

    def _opt_out(self, event: dict[str, Any]) -> None:
        """A texted STOP or START, applied to the number's consents (a replay changes nothing)."""
        caller = str(event.get("caller") or "")
        if not caller.startswith("+"):
            return  # only a phone number can text
        granted = event.get("name") == EventName.SMS_OPTED_IN
        source = f"texted {_text(_data(event).get('keyword')) or ('START' if granted else 'STOP')}"
        if opt_outs.apply(self.db, caller, granted, source, _at(event)):
            customer_id = self.customers.get(caller)
            if customer_id is not None:
                self.touched.add(customer_id)

    def _callback(self, stream_id: str, event: dict[str, Any]) -> dict[str, Any]:
        """The row of a caller's request to be called back (shown in the agent console)."""
        data = _data(event)
        interaction = self.interactions[contact(event)]
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
            (row.kind, row.value): row
            for row in self.db.execute(
                _IDENTITIES, {"values": [value for (_, value), _, _ in strongest.values()]}
            )
        }
        stronger: list[dict[str, Any]] = []
        first: list[tuple[str, tuple[IdentityKind, str], Evidence, datetime]] = []
        for caller, ((kind, value), evidence, at) in strongest.items():
            row = found.get((kind.value, value))
            if row is None:
                first.append((caller, (kind, value), evidence, at))
                continue
            if customers.STRENGTH[evidence] > customers.STRENGTH.get(row.evidence, 0):
                stronger.append({"_id": row.id, "evidence": evidence.value, "evidence_at": at})
            self.customers[caller] = (
                row.customer_id
                if row.merged_into_id is None
                else customers.current_customer(self.db, self.db.get_one(Customer, row.customer_id)).id
            )  # fmt: skip
        if stronger:
            self.db.execute(
                update(_table(Identity))
                .where(_table(Identity).c.id == bindparam("_id"))
                .values(evidence=bindparam("evidence"), evidence_at=bindparam("evidence_at")),
                stronger,
            )
        if not first:
            return
        # A first contact: the customer and its identity, made together. Another writer that
        # made one of them a moment ago fails the batch on the unique identity: it is then
        # written again and finds theirs.
        made = _insert_returning(
            self.db, Customer, [{"created_at": at, "updated_at": at} for *_, at in first]
        )
        self.db.execute(
            insert(_table(Identity)),
            [
                {
                    "customer_id": customer_id, "kind": kind.value, "value": value,
                    "evidence": evidence.value, "evidence_at": at, "created_at": at,
                }
                for customer_id, (_, (kind, value), evidence, at) in zip(made, first, strict=True)
            ],
        )  # fmt: skip
        for customer_id, (caller, *_) in zip(made, first, strict=True):
            self.customers[caller] = customer_id

    def _conversations(self, fresh: list[tuple[str, dict[str, Any]]]) -> None:
        first: dict[str, dict[str, Any]] = {}
        for _, event in fresh:
            first.setdefault(_ref(event), event)
        latest: dict[str, Any] = {}
        for row in self.db.execute(_CONVERSATIONS, {"refs": list(first)}):
            latest[row.ref] = row  # the highest generation wins
        new: list[tuple[str, dict[str, Any]]] = []
        for ref, event in first.items():
            found = latest.get(ref)
            customer_id = self.customers.get(str(event.get("caller") or ""))
            if found is None or found.status == ConversationStatus.CLOSED:
                # new, or closed: a contact after closing starts a new conversation
                new.append(
                    (
                        ref,
                        {
                            "ref": ref,
                            "generation": found.generation + 1 if found is not None else 0,
                            "customer_id": customer_id,
                            "status": ConversationStatus.ACTIVE.value,
                            "opened_at": _at(event),
                            "last_activity_at": _at(event),
                        },
                    )
                )
                continue
            conversation = _Conversation(
                found.id, found.customer_id, found.status, found.topic,
                aware(found.last_activity_at),
            )  # fmt: skip
            conversation.adopt(customer_id)
            self.conversations[ref] = conversation
        made = _insert_returning(self.db, Conversation, [values for _, values in new])
        for row_id, (ref, values) in zip(made, new, strict=True):
            self.conversations[ref] = _Conversation(
                row_id, values["customer_id"], values["status"], None, values["last_activity_at"]
            )

    def _interactions(self, fresh: list[tuple[str, dict[str, Any]]]) -> None:
        first: dict[str, dict[str, Any]] = {}
        for _, event in fresh:
            first.setdefault(contact(event), event)
        known = {
            row.contact_sid: row for row in self.db.execute(_INTERACTIONS, {"sids": list(first)})
        }
        new: list[tuple[str, dict[str, Any]]] = []
        for sid, event in first.items():
            customer_id = self.customers.get(str(event.get("caller") or ""))
            row = known.get(sid)
            if row is None:
                new.append(
                    (
                        sid,
                        {
                            "conversation_id": self.conversations[_ref(event)].id,
                            "customer_id": customer_id,
                            "channel": _text(event.get("channel")) or "voice",
                            "direction": "outbound"
                            if _data(event).get("direction") == "outbound"
                            else "inbound",
                            "contact_sid": sid,
                            "flow_id": _text(event.get("flow")),
                            "flow_version": _text(event.get("version")),
                            "started_at": _at(event),
                        },
                    )
                )
                if customer_id is not None:
                    self.touched.add(customer_id)  # a new contact on the card
                continue
            interaction = _Interaction(
                row.id, row.customer_id, row.last_node, _aware_or_none(row.ended_at),
                row.outcome, row.agent, row.summary,
            )  # fmt: skip
            interaction.adopt(customer_id)
            self.interactions[sid] = interaction
        made = _insert_returning(self.db, Interaction, [values for _, values in new])
        for row_id, (sid, values) in zip(made, new, strict=True):
            self.interactions[sid] = _Interaction(row_id, values["customer_id"])

    def _write_back(self) -> None:
        """What the events changed on their conversations and interactions: one ``UPDATE`` per
        table and set of changed columns."""
        rows: Iterable[_Row]
        for model, rows in (
            (Conversation, self.conversations.values()),
            (Interaction, self.interactions.values()),
        ):
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for row in rows:
                changes = row.changes()
                if changes:
                    groups.setdefault(tuple(sorted(changes)), []).append({"_id": row.id, **changes})
            table = _table(model)
            for columns, params in groups.items():
                self.db.execute(
                    update(table)
                    .where(table.c.id == bindparam("_id"))
                    .values({name: bindparam(name) for name in columns}),
                    params,
                )


# ---- writing rows -------------------------------------------------------------------------------
_EVENT_COLUMNS = ("stream_id", "interaction_id", "conversation_id", "at", "kind", "node", "data")
_COPY_EVENTS = f"COPY events ({', '.join(_EVENT_COLUMNS)}) FROM STDIN"


def insert_events(db: Session, rows: list[dict[str, Any]]) -> None:
    """Insert a batch's event rows: PostgreSQL's ``COPY`` (one stream of rows, no statement to
    build and parse per batch), else one multi-row ``INSERT``. A stream id written meanwhile
    by another writer fails the batch on the unique constraint either way (as
    :class:`~sqlalchemy.exc.IntegrityError`), and the batch is written again."""
    connection = db.connection()
    if connection.dialect.name != "postgresql":
        db.execute(insert(_table(Event)), rows)
        return
    driver = connection.connection.driver_connection
    assert driver is not None
    dbapi = connection.dialect.loaded_dbapi
    try:
        with driver.cursor() as cursor, cursor.copy(_COPY_EVENTS) as copy:
            for row in rows:
                copy.write_row(
                    (
                        row["stream_id"], row["interaction_id"], row["conversation_id"],
                        row["at"], row["kind"], row["node"], orjson.dumps(row["data"]).decode(),
                    )
                )  # fmt: skip
    except dbapi.IntegrityError as exc:
        raise IntegrityError(_COPY_EVENTS, None, exc) from exc


def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


def _insert_returning(db: Session, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` into ``model``'s table in one statement; their ids, in order."""
    if not rows:
        return []
    table = _table(model)
    result = db.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
    return [row_id for (row_id,) in result]


# ---- what events mean ---------------------------------------------------------------------------
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


def contact(event: dict[str, Any]) -> str:
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
    interaction: _Interaction,
    conversation: _Conversation,
    name: str,
    event: dict[str, Any],
    at: datetime,
) -> None:
    """What an event says about its interaction (where it is, how it ended) and its
    conversation (what it is about)."""
    data = _data(event)
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
    if name == EventName.CALLER_VERIFIED:
        return Evidence.VERIFIED
    if _data(event).get("attested") is True:
        return Evidence.STIR_A
    return Evidence.CALLER_ID


def _aware_or_none(moment: datetime | None) -> datetime | None:
    return None if moment is None else aware(moment)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
