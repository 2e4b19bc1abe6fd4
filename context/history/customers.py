"""Who a contact is: from the caller key of an event to one :class:`~.models.Customer`.

A contact is recognised by its identity (an E.164 number, a SIP or client id); a caller without
caller ID is keyed by its CallSid and is nobody yet. The first contact from an identity creates
the customer; two first contacts at the same moment create one, because ``(kind, value)`` is
unique and the loser of that race reads the winner's row. Evidence only ever gets stronger.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from context.history.models import Customer, Evidence, Identity, IdentityKind

STRENGTH = {evidence: rank for rank, evidence in enumerate(Evidence)}


def identity_of(caller: str, call_sid: str) -> tuple[IdentityKind, str] | None:
    """The identity an event's caller key names; ``None`` for a caller without caller ID."""
    if not caller or caller == call_sid or caller.startswith("call:"):
        return None  # a caller without caller ID is keyed by its CallSid
    if caller.startswith("+"):
        return IdentityKind.PHONE, caller
    if caller.startswith("client:"):
        return IdentityKind.CLIENT, caller
    return IdentityKind.SIP, caller


def resolve(
    db: Session, kind: IdentityKind, value: str, evidence: Evidence, at: datetime
) -> Customer:
    """The customer ``value`` belongs to, created (with the identity) at its first contact."""
    identity = _identity(db, kind, value)
    if identity is None:
        try:
            with db.begin_nested():
                customer = Customer(created_at=at, updated_at=at)
                identity = Identity(
                    customer=customer,
                    kind=kind.value,
                    value=value,
                    evidence=evidence.value,
                    evidence_at=at,
                    created_at=at,
                )
                db.add(identity)
        except IntegrityError:  # another writer created it a moment ago: use that one
            identity = _identity(db, kind, value)
            if identity is None:
                raise
    strengthen(identity, evidence, at)
    return current_customer(db, identity.customer)


def strengthen(identity: Identity, evidence: Evidence, at: datetime) -> None:
    """Record ``evidence`` for ``identity`` if it is stronger than what was known."""
    known = STRENGTH.get(identity.evidence, 0)  # type: ignore[call-overload]
    if STRENGTH[evidence] > known:
        identity.evidence = evidence.value
        identity.evidence_at = at


def current_customer(db: Session, customer: Customer) -> Customer:
    """``customer``, or the customer it was merged into (following merges that stand)."""
    seen = {customer.id}
    while customer.merged_into_id is not None:
        target = db.get(Customer, customer.merged_into_id)
        if target is None or target.id in seen:
            break
        seen.add(target.id)
        customer = target
    return customer


def _identity(db: Session, kind: IdentityKind, value: str) -> Identity | None:
    return db.scalars(
        select(Identity).where(Identity.kind == kind.value, Identity.value == value)
    ).first()
