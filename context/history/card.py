"""The customer card: a compact summary of a customer's history, kept in Redis for flows.

The history writer rebuilds the card of every customer a batch touched, after the commit, and
stores it under each of the customer's caller keys (same hash tag as the session), so the
session load brings it in the same round trip and a flow can say "Are you calling about your
cancelled flight to Denver?" without a webhook ever touching SQL. The card holds the name and
language, the latest contacts (channel, time, outcome, summary, flow, topic) and the open
conversation (its topic and last step).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from context.history.models import Conversation, ConversationStatus, Customer, Interaction

CONTACTS = 10  # the latest contacts a card lists
CARD_TTL = 30 * 86400


def build(db: Session, customer: Customer) -> dict[str, Any]:
    """The card of ``customer`` as a JSON-ready dict."""
    latest = db.scalars(
        select(Interaction)
        .where(Interaction.customer_id == customer.id)
        .order_by(Interaction.started_at.desc(), Interaction.id.desc())
        .limit(CONTACTS)
    ).all()
    topics = _topics(db, {i.conversation_id for i in latest})
    open_conversation = db.scalars(
        select(Conversation)
        .where(
            Conversation.customer_id == customer.id,
            Conversation.status != ConversationStatus.CLOSED.value,
        )
        .order_by(Conversation.topic.is_(None), Conversation.last_activity_at.desc())
    ).first()  # the latest open matter that has a topic, else the latest open one
    card: dict[str, Any] = {
        "v": 1,
        "name": customer.display_name,
        "language": customer.language,
        "time_zone": customer.time_zone,
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
                "topic": topics.get(i.conversation_id),
            }
            for i in latest
        ],
        "open_conversation": None,
    }
    if open_conversation is not None:
        last = next((i for i in latest if i.conversation_id == open_conversation.id), None)
        card["open_conversation"] = {
            "topic": open_conversation.topic,
            "status": open_conversation.status,
            "since": _epoch(open_conversation.opened_at),
            "last_step": last.last_node if last else None,
            "sids": [i.contact_sid for i in latest if i.conversation_id == open_conversation.id],
        }
    return card


def _topics(db: Session, ids: set[int]) -> dict[int, str | None]:
    if not ids:
        return {}
    rows = db.execute(select(Conversation.id, Conversation.topic).where(Conversation.id.in_(ids)))
    return {row.id: row.topic for row in rows}


def _epoch(moment: datetime) -> float:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return round(aware.timestamp(), 3)
