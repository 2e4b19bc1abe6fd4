"""Data rights: everything we hold about one customer, exported as JSON or erased.

A subject is named by a phone number (any written form; it must parse) or an email address.
An export gathers the customer, identities, consents, conversations, interactions, events and
callback requests.
An erasure deletes those rows, the live session and the events of that caller still waiting in
the stream (so the history writer cannot write them back), and records that it happened. Both
are recorded as a :class:`~.models.DataRequest` holding only a masked subject and row counts.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import CursorResult, delete, or_, select, update
from sqlalchemy.orm import Session

from context.callers import masked, to_e164
from context.event_stream import FIELD, EventStream
from context.history.models import (
    CallbackRequest,
    Consent,
    Conversation,
    Customer,
    DataRequest,
    Event,
    Identity,
    IdentityKind,
    Interaction,
)
from context.sessions import SessionStore
from ivr.errors import OmnivoiceError
from ivr.states import EventName

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class UnknownSubject(OmnivoiceError):
    """The text names no phone number or email address, or nobody we know."""


def subject_of(text: str, default_region: str = "US") -> tuple[IdentityKind, str]:
    """The identity ``text`` names: an E.164 number or a lower-cased email address.

    Raises:
        UnknownSubject: it is neither (the text is never stored).
    """
    cleaned = text.strip()
    if _EMAIL.fullmatch(cleaned):
        return IdentityKind.EMAIL, cleaned.lower()
    number = to_e164(cleaned, default_region)
    if number is None:
        raise UnknownSubject(
            "that is neither a phone number (e.g. +14155550123) nor an email address"
        )
    return IdentityKind.PHONE, number


def find(db: Session, kind: IdentityKind, value: str) -> Customer:
    """The customer with identity ``(kind, value)``.

    Raises:
        UnknownSubject: no customer has it.
    """
    identity = db.scalars(
        select(Identity).where(Identity.kind == kind.value, Identity.value == value)
    ).first()
    if identity is None:
        raise UnknownSubject(f"no customer has the {kind.value} {masked(value)}")
    return identity.customer


def export(db: Session, customer: Customer, subject: str) -> dict[str, Any]:
    """Everything held about ``customer``, JSON-ready; recorded as a data request."""
    interactions = db.scalars(
        select(Interaction)
        .where(Interaction.customer_id == customer.id)
        .order_by(Interaction.started_at)
    ).all()
    ids = [i.id for i in interactions]
    events = db.scalars(
        select(Event).where(Event.interaction_id.in_(ids)).order_by(Event.at, Event.id)
    ).all()
    conversations = db.scalars(
        select(Conversation).where(Conversation.customer_id == customer.id)
    ).all()
    document = {
        "customer": _row(customer, ("id", "display_name", "language", "time_zone",
                                     "preferences", "created_at")),
        "identities": [
            _row(i, ("kind", "value", "evidence", "evidence_at", "shared"))
            for i in customer.identities
        ],
        "consents": [
            _row(c, ("channel", "purpose", "granted", "source", "at")) for c in customer.consents
        ],
        "conversations": [
            _row(c, ("id", "status", "topic", "opened_at", "last_activity_at", "closed_at"))
            for c in conversations
        ],
        "interactions": [
            {
                **_row(i, ("id", "conversation_id", "channel", "direction", "contact_sid",
                           "flow_id", "flow_version", "started_at", "ended_at", "outcome",
                           "agent", "summary")),
                "events": [
                    _row(e, ("at", "kind", "node", "data"))
                    for e in events
                    if e.interaction_id == i.id
                ],
            }
            for i in interactions
        ],
        "callback_requests": [
            _row(c, ("number", "call_sid", "handoff_id", "reason", "status", "at", "done_at",
                     "done_by"))
            for c in db.scalars(
                select(CallbackRequest)
                .where(_callbacks_of(customer, _callers(customer)))
                .order_by(CallbackRequest.at, CallbackRequest.id)
            )
        ],
    }  # fmt: skip
    db.add(DataRequest(kind="export", subject=masked(subject), counts=_counts(document)))
    return document


def erase(
    db: Session, customer: Customer, subject: str, store: SessionStore, stream: EventStream
) -> dict[str, int]:
    """Delete ``customer`` everywhere (SQL, session, waiting events); the rows deleted."""
    callers = _callers(customer)
    waiting = sum(_purge_stream(stream, caller) for caller in callers)
    sessions = sum(store.forget(caller) for caller in callers)
    conversation_ids = select(Conversation.id).where(Conversation.customer_id == customer.id)
    interaction_ids = select(Interaction.id).where(
        or_(
            Interaction.customer_id == customer.id,
            Interaction.conversation_id.in_(conversation_ids),
        )
    )
    handed = _forget_handoffs(db, store, interaction_ids, callers)
    counts = {
        "events": _deleted(
            db,
            delete(Event).where(
                or_(
                    Event.interaction_id.in_(interaction_ids),
                    Event.conversation_id.in_(conversation_ids),
                )
            ),
        ),
        "interactions": _deleted(
            db, delete(Interaction).where(Interaction.id.in_(interaction_ids))
        ),
        "conversations": _deleted(
            db, delete(Conversation).where(Conversation.customer_id == customer.id)
        ),
        "identities": _deleted(db, delete(Identity).where(Identity.customer_id == customer.id)),
        "consents": _deleted(db, delete(Consent).where(Consent.customer_id == customer.id)),
        "callback_requests": _deleted(
            db,
            delete(CallbackRequest).where(_callbacks_of(customer, callers)),
        ),
        "stream_entries": waiting,
        "redis_keys": sessions + handed,
    }
    db.execute(
        update(Customer).where(Customer.merged_into_id == customer.id).values(merged_into_id=None)
    )
    db.delete(customer)
    counts["customers"] = 1
    db.add(DataRequest(kind="erase", subject=masked(subject), counts=counts))
    return counts


def _forget_handoffs(
    db: Session, store: SessionStore, interaction_ids: Any, callers: list[str]
) -> int:
    """Delete the customer's handoff bundles (by id and by call) and their entries in the
    agents' feed; how many keys and entries went."""
    sids = list(
        db.scalars(select(Interaction.contact_sid).where(Interaction.id.in_(interaction_ids)))
    )
    ids = [
        str(data.get("handoff_id"))
        for data in db.scalars(
            select(Event.data).where(
                Event.interaction_id.in_(interaction_ids), Event.kind == EventName.HANDOFF.value
            )
        )
        if isinstance(data, dict) and data.get("handoff_id")
    ]
    keys = store.keys
    feed = keys.agent_feed()
    entries: list[Any] = []
    replies: Any = store.redis.xrange(feed)
    for entry_id, fields in replies or []:
        raw = (fields or {}).get(FIELD.encode()) or (fields or {}).get(FIELD)
        event = orjson.loads(raw) if raw is not None else {}
        if isinstance(event, dict) and event.get("caller") in callers:
            entries.append(entry_id)
            # A handoff the history has not written yet is known from the feed only.
            data = event.get("data")
            data = data if isinstance(data, dict) else {}
            if isinstance(event.get("call_sid"), str):
                sids.append(event["call_sid"])
            if isinstance(data.get("handoff_id"), str):
                ids.append(data["handoff_id"])
    doomed = {keys.handoff(i) for i in ids} | {keys.call_handoff(sid) for sid in sids}
    gone = sum(int(store.redis.delete(key)) for key in doomed)  # one slot per key on a cluster
    if entries:
        store.redis.xdel(feed, *entries)
    return gone + len(entries)


def _purge_stream(stream: EventStream, caller: str) -> int:
    """Delete the caller's entries from its shard of the stream; how many there were."""
    key = stream.key_for(caller)
    doomed = []
    for entry_id, fields in stream.redis.xrange(key):
        raw = fields.get(FIELD.encode()) or fields.get(FIELD)
        if raw is not None and orjson.loads(raw).get("caller") == caller:
            doomed.append(entry_id)
    if doomed:
        stream.redis.xdel(key, *doomed)
    return len(doomed)


def _deleted(db: Session, statement: Any) -> int:
    result = db.execute(statement)
    return int(result.rowcount or 0) if isinstance(result, CursorResult) else 0


def _callers(customer: Customer) -> list[str]:
    """The caller keys of ``customer``: every identity but an email address."""
    return [i.value for i in customer.identities if i.kind != IdentityKind.EMAIL]


def _callbacks_of(customer: Customer, callers: list[str]) -> Any:
    """The callback requests of ``customer``: theirs, or asked from one of ``callers``."""
    return or_(CallbackRequest.customer_id == customer.id, CallbackRequest.number.in_(callers))


def _row(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {
        name: (value.isoformat() if isinstance(value, datetime) else value)
        for name in names
        for value in (getattr(obj, name),)
    }


def _counts(document: dict[str, Any]) -> dict[str, int]:
    return {
        "identities": len(document["identities"]),
        "conversations": len(document["conversations"]),
        "interactions": len(document["interactions"]),
        "events": sum(len(i["events"]) for i in document["interactions"]),
    }
