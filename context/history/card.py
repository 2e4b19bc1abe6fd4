"""The customer card: a compact summary of a customer's history, kept in Redis for flows.

The history writer rebuilds the card of every customer a batch touched, after the commit, and
stores it under each of the customer's caller keys (same hash tag as the session), so the
session load brings it in the same round trip and a flow can say "Are you calling about your
cancelled flight to Denver?" without a webhook ever touching SQL. The card holds the name and
language, the latest contacts (channel, time, outcome, summary, flow, topic) and the open
conversation (its topic and last step), the latest notes agents wrote, and which of the
customer's numbers are shared by several people.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, Select, bindparam, func, literal, or_, select
from sqlalchemy.orm import Session

from context.history.models import (
    Conversation,
    ConversationStatus,
    Customer,
    Event,
    Identity,
    IdentityKind,
    Interaction,
    aware,
)
from ivr.states import EventName

CONTACTS = 10  # the latest contacts a card lists
NOTES = 5  # the latest agents' notes a card carries (the next handoff shows them)
CARD_TTL = 30 * 86400


# The five queries, built once: each card rebuild only binds the customers' ids.
_IDS: BindParameter[list[int]] = bindparam("ids", expanding=True)

_PEOPLE = select(Customer.id, Customer.display_name, Customer.language, Customer.time_zone).where(
    Customer.id.in_(_IDS), Customer.merged_into_id.is_(None)
)

_CALLERS = select(Identity.customer_id, Identity.value, Identity.shared).where(
    Identity.customer_id.in_(_IDS), Identity.kind != IdentityKind.EMAIL.value
)


def _latest_contacts() -> Select[Any]:
    rank = (
        func.row_number()
        .over(
            partition_by=Interaction.customer_id,
            order_by=(Interaction.started_at.desc(), Interaction.id.desc()),
        )
        .label("rank")
    )
    ranked = (
        select(
            Interaction.customer_id,
            Interaction.conversation_id,
            Interaction.contact_sid,
            Interaction.channel,
            Interaction.direction,
            Interaction.started_at,
            Interaction.ended_at,
            Interaction.outcome,
            Interaction.summary,
            Interaction.flow_id,
            Interaction.last_node,
            rank,
        )
        .where(Interaction.customer_id.in_(_IDS))
        .subquery()
    )
    return select(ranked).where(ranked.c.rank <= CONTACTS).order_by(ranked.c.rank)


_CONTACTS = _latest_contacts()

_CONVERSATIONS = select(
    Conversation.id,
    Conversation.ref,
    Conversation.customer_id,
    Conversation.topic,
    Conversation.status,
    Conversation.opened_at,
    Conversation.last_activity_at,
).where(
    Conversation.customer_id.in_(_IDS),
    or_(
        Conversation.status != ConversationStatus.CLOSED.value,
        Conversation.id.in_(bindparam("referenced", expanding=True)),
    ),
)


def _latest_notes() -> Select[Any]:
    # The kind is written into the SQL, so the planner can use the index of agents' notes
    # (``ix_events_agent_notes``, partial on that kind) whatever plan it keeps.
    rank = (
        func.row_number()
        .over(partition_by=Interaction.customer_id, order_by=(Event.at.desc(), Event.id.desc()))
        .label("rank")
    )
    ranked = (
        select(Interaction.customer_id, Interaction.contact_sid, Event.at, Event.data, rank)
        .join(Interaction, Interaction.id == Event.interaction_id)
        .where(
            Interaction.customer_id.in_(_IDS),
            Event.kind == literal(EventName.AGENT_NOTE.value, literal_execute=True),
        )
        .subquery()
    )
    return select(ranked).where(ranked.c.rank <= NOTES).order_by(ranked.c.rank)


_NOTES = _latest_notes()


def build_all(db: Session, customer_ids: Iterable[int]) -> list[tuple[list[str], dict[str, Any]]]:
    """The cards of ``customer_ids``, each with the caller keys it is kept under.

    Five queries whatever the number of customers: the customers, their identities, their
    latest contacts (a window over each customer's interactions), the conversations those
    contacts belong to or that are still open, and the latest notes agents wrote.
    """
    ids = sorted(set(customer_ids))
    if not ids:
        return []
    people = {row.id: row for row in db.execute(_PEOPLE, {"ids": ids})}
    callers: dict[int, list[str]] = defaultdict(list)
    shared: dict[int, list[str]] = defaultdict(list)
    for row in db.execute(_CALLERS, {"ids": list(people)}):
        callers[row.customer_id].append(row.value)
        if row.shared:
            shared[row.customer_id].append(row.value)
    contacts: dict[int, list[Any]] = defaultdict(list)
    for row in db.execute(_CONTACTS, {"ids": list(people)}):
        contacts[row.customer_id].append(row)
    referenced = {row.conversation_id for rows in contacts.values() for row in rows}
    conversations = {
        row.id: row
        for row in db.execute(
            _CONVERSATIONS, {"ids": list(people), "referenced": sorted(referenced)}
        )
    }
    notes = _notes(db, list(people))
    cards = []
    for customer_id, person in people.items():
        if callers[customer_id]:
            found = _card(person, contacts[customer_id], conversations, customer_id)
            found["customer"] = customer_id
            found["shared"] = shared[customer_id]
            found["notes"] = notes[customer_id]
            cards.append((callers[customer_id], found))
    return cards


def _notes(db: Session, customer_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The latest notes agents wrote about each customer (newest first), one query."""
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in db.execute(_NOTES, {"ids": customer_ids}):
        data = row.data if isinstance(row.data, dict) else {}
        found[row.customer_id].append(
            {
                "at": _epoch(row.at),
                "agent": data.get("agent"),
                "text": data.get("text"),
                "disposition": data.get("disposition"),
                "call_sid": row.contact_sid,
            }
        )
    return found


def _card(
    person: Any, latest: list[Any], conversations: dict[int, Any], customer_id: int
) -> dict[str, Any]:
    card: dict[str, Any] = {
        "v": 1,
        "name": person.display_name,
        "language": person.language,
        "time_zone": person.time_zone,
        "contacts": [
            {
                "sid": i.contact_sid,
                "channel": i.channel,
                "direction": i.direction,
                "at": _epoch(i.started_at),
                "ended_at": _epoch(i.ended_at) if i.ended_at else None,
                "outcome": i.outcome,
                "summary": i.summary,
                "flow": i.flow_id,
                "node": i.last_node,
                "topic": getattr(conversations.get(i.conversation_id), "topic", None),
            }
            for i in latest
        ],
        "open_conversation": None,
    }
    open_ones = [
        c
        for c in conversations.values()
        if c.customer_id == customer_id and c.status != ConversationStatus.CLOSED
    ]
    # the latest open matter that has a topic, else the latest open one
    open_ones.sort(key=lambda c: (c.topic is not None, _epoch(c.last_activity_at)), reverse=True)
    if open_ones:
        chosen = open_ones[0]
        last = next((i for i in latest if i.conversation_id == chosen.id), None)
        card["open_conversation"] = {
            "ref": chosen.ref,  # the conversation id events name (an inbound text joins it)
            "topic": chosen.topic,
            "status": chosen.status,
            "since": _epoch(chosen.opened_at),
            "last_step": last.last_node if last else None,
            "sids": [i.contact_sid for i in latest if i.conversation_id == chosen.id],
        }
    return card


def _epoch(moment: datetime) -> float:
    return round(aware(moment).timestamp(), 3)
