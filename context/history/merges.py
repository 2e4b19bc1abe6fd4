"""Merging two customer records into one, and undoing it, with nothing lost either way.

Merges are only ever asked for (``flask --app app customers merge``), never inferred: two
people who share a number stay two customers. A merge moves the source's identities, consents,
conversations, interactions and callback requests to the target, marks the source as merged
into it, and records exactly which rows moved in a :class:`~.models.Merge`. Undoing it moves
those rows back (rows made after the merge stay where they are) and marks the merge undone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from context.history.models import (
    CallbackRequest,
    Consent,
    Conversation,
    Customer,
    Identity,
    Interaction,
    Merge,
)
from ivr.errors import OmnivoiceError

_MOVED = (
    ("identities", Identity),
    ("consents", Consent),
    ("conversations", Conversation),
    ("interactions", Interaction),
    ("callback_requests", CallbackRequest),
)


class MergeRefused(OmnivoiceError):
    """A merge or an undo that cannot be done, with the reason."""


def merge(db: Session, source: Customer, target: Customer, reason: str, at: datetime) -> Merge:
    """Merge ``source`` into ``target``.

    Raises:
        MergeRefused: the two are one, either is itself merged, or a consent would clash.
    """
    if source.id == target.id:
        raise MergeRefused("a customer cannot be merged into itself")
    if source.merged_into_id is not None or target.merged_into_id is not None:
        raise MergeRefused("one of the two is already merged into another customer")
    clash = _consent_clash(db, source, target)
    if clash:
        raise MergeRefused(f"both customers have a consent for {clash}: settle it first")
    moved: dict[str, Any] = {}
    for name, model in _MOVED:
        ids = list(db.scalars(select(model.id).where(model.customer_id == source.id)))
        if ids:
            db.execute(update(model).where(model.id.in_(ids)).values(customer_id=target.id))
        moved[name] = ids
    source.merged_into_id = target.id
    record = Merge(
        source_id=source.id, target_id=target.id, moved=moved, reason=reason[:200], at=at
    )
    db.add(record)
    db.flush()
    return record


def undo(db: Session, merge_id: int, at: datetime) -> Merge:
    """Undo merge ``merge_id``: every row it moved goes back to the source.

    Raises:
        MergeRefused: no such merge, or it was undone already.
    """
    record = db.get(Merge, merge_id)
    if record is None:
        raise MergeRefused(f"there is no merge {merge_id}")
    if record.undone_at is not None:
        raise MergeRefused(f"merge {merge_id} was undone already")
    for name, model in _MOVED:
        ids = [int(i) for i in record.moved.get(name, [])]
        if ids:
            db.execute(
                update(model)
                .where(model.id.in_(ids), model.customer_id == record.target_id)
                .values(customer_id=record.source_id)
            )
    source = db.get(Customer, record.source_id)
    if source is not None:
        source.merged_into_id = None
    record.undone_at = at
    return record


def _consent_clash(db: Session, source: Customer, target: Customer) -> str | None:
    """A channel and purpose both customers have a consent row for (unique per customer)."""
    rows = db.execute(
        select(Consent.customer_id, Consent.channel, Consent.purpose).where(
            Consent.customer_id.in_([source.id, target.id])
        )
    ).all()
    seen: dict[tuple[str, str], int] = {}
    for customer_id, channel, purpose in rows:
        other = seen.setdefault((channel, purpose), customer_id)
        if other != customer_id:
            return f"{purpose} by {channel}"
    return None
