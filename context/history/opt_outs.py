"""Texted STOP and START: a number's consent to texts, withdrawn and given back.

STOP (or a synonym) withdraws every consent the number's customer gave for the ``sms`` channel,
and records a no for ``service`` texts, so :func:`consents.decide` refuses the number for any
purpose: no flow and no agent can text it. START gives ``service`` texts back (other purposes
need a fresh yes). The same opt-out reaches SQL twice on purpose: written at once by the
webhook when the database answers (a shortcut), and always as an event on the stream, which
the history writer applies (the durable path). Either may come first, or come again: a change
older than the one recorded is ignored, so applying one twice, or late, changes nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from context.history import consents, customers
from context.history.models import Consent, Evidence, IdentityKind, aware

CHANNEL = "sms"


def apply(db: Session, number: str, granted: bool, source: str, at: datetime) -> bool:
    """Record that ``number`` opted in (``granted``) or out at ``at``; ``False`` if a later
    change is already on record (nothing is written then)."""
    customer = customers.resolve(db, IdentityKind.PHONE, number, Evidence.CALLER_ID, at)
    rows = {
        row.purpose: row
        for row in db.scalars(
            select(Consent).where(Consent.customer_id == customer.id, Consent.channel == CHANNEL)
        )
    }
    service = rows.get(consents.SERVICE)
    if service is not None and service.at is not None and aware(service.at) > at:
        return False  # a newer STOP or START is on record: this one is old news
    changed = [service] if service is not None else []
    if not granted:  # a STOP withdraws every yes given for texts
        changed += [row for name, row in rows.items() if name != consents.SERVICE]
    if service is None:
        service = Consent(customer_id=customer.id, channel=CHANNEL, purpose=consents.SERVICE)
        db.add(service)
        changed.append(service)
    for row in changed:
        row.granted, row.source, row.at = granted, source[:200], at
    db.flush()
    return True
