"""Consent to be contacted first: per customer, channel and purpose.

Service messages (about something the customer started: a booking, a case) may go out unless
the customer said no; any other purpose (reminders, marketing) needs a recorded yes. A number
nobody has a record for has consented to nothing but service.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from context.history import customers
from context.history.models import Consent, Customer, Evidence, Identity, IdentityKind

SERVICE = "service"


@dataclass(frozen=True)
class ConsentDecision:
    """May we reach out, and if not why; the customer's time zone when we know it."""

    allowed: bool
    reason: str | None = None
    time_zone: str | None = None


def decide(db: Session, number: str, channel: str, purpose: str) -> ConsentDecision:
    """Whether ``number`` may be contacted on ``channel`` for ``purpose``."""
    customer = _customer(db, number)
    row = None
    if customer is not None:
        row = db.scalars(
            select(Consent).where(
                Consent.customer_id == customer.id,
                Consent.channel == channel,
                Consent.purpose == purpose,
            )
        ).first()
    zone = customer.time_zone if customer is not None else None
    if row is not None and not row.granted:
        return ConsentDecision(False, f"the customer said no to {purpose} by {channel}", zone)
    if row is None and purpose != SERVICE:
        return ConsentDecision(False, f"no consent on record for {purpose} by {channel}", zone)
    return ConsentDecision(True, None, zone)


def record(
    db: Session, number: str, channel: str, purpose: str, granted: bool, source: str, at: datetime
) -> Consent:
    """Record that ``number``'s customer granted (or withdrew) consent; creates the customer."""
    customer = customers.resolve(db, IdentityKind.PHONE, number, Evidence.CALLER_ID, at)
    row = db.scalars(
        select(Consent).where(
            Consent.customer_id == customer.id,
            Consent.channel == channel,
            Consent.purpose == purpose,
        )
    ).first()
    if row is None:
        row = Consent(customer_id=customer.id, channel=channel, purpose=purpose, granted=granted)
        db.add(row)
    row.granted, row.source, row.at = granted, source[:200], at
    return row


def _customer(db: Session, number: str) -> Customer | None:
    identity = db.scalars(
        select(Identity).where(Identity.kind == IdentityKind.PHONE.value, Identity.value == number)
    ).first()
    return customers.current_customer(db, identity.customer) if identity is not None else None
