"""The history tables, as SQLAlchemy 2.0 typed models.

A :class:`Customer` has several :class:`Identity` rows (phone numbers in E.164, email addresses,
SIP and client ids), each recording the evidence that links it and when. A :class:`Conversation`
is one matter across channels for one customer; an :class:`Interaction` is one contact (a call,
a text) within it; an :class:`Event` is one recorded moment of an interaction, with sensitive
values already masked (they are masked before they reach the event stream). Merging two
customers is a :class:`Merge` that records what it moved, so it can be undone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """Now, in UTC (every time in the history is UTC)."""
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """``moment`` with its UTC zone: SQLite hands back naive datetimes."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class IdentityKind(StrEnum):
    """How a customer can be reached or recognised."""

    PHONE = "phone"
    EMAIL = "email"
    SIP = "sip"
    CLIENT = "client"


class Evidence(StrEnum):
    """Why an identity is believed to belong to its customer, weakest first."""

    CALLER_ID = "caller_id"  # the network said this number called
    STIR_A = "stir_a"  # STIR/SHAKEN full attestation of that number
    RESUME_CODE = "resume_code"  # a caller without caller ID keyed a resume code
    VERIFIED = "verified"  # the caller passed a flow's verified node
    ONE_TIME_CODE = "one_time_code"
    EMAIL_CONFIRMED = "email_confirmed"


class ConversationStatus(StrEnum):
    """A conversation's life: active, then inactive when idle, then closed."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    CLOSED = "closed"


class Outcome(StrEnum):
    """How an interaction ended."""

    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    TRANSFERRED = "transferred"
    ABANDONED = "abandoned"
    NO_ANSWER = "no-answer"
    MACHINE = "machine"
    REFUSED = "refused"  # an outbound contact we did not make (consent, quiet hours, ...)
    FAILED = "failed"  # an outbound contact Twilio refused


class Base(DeclarativeBase):
    """The declarative base of every history table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class Customer(Base):
    """One person (or business) we talk to, whatever the channel."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str | None] = mapped_column(String(35))  # BCP 47, e.g. es-MX
    time_zone: Mapped[str | None] = mapped_column(String(64))  # IANA, e.g. America/Denver
    preferences: Mapped[dict[str, Any]] = mapped_column(default=dict)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    identities: Mapped[list[Identity]] = relationship(back_populates="customer")
    consents: Mapped[list[Consent]] = relationship(back_populates="customer")


class Consent(Base):
    """Whether a customer agreed to be contacted on a channel for a purpose, and since when."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("customer_id", "channel", "purpose"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))  # voice, sms, email
    purpose: Mapped[str] = mapped_column(String(32))  # service, reminders, marketing
    granted: Mapped[bool]
    source: Mapped[str | None] = mapped_column(String(200))  # where it was given
    at: Mapped[datetime] = mapped_column(default=utcnow)

    customer: Mapped[Customer] = relationship(back_populates="consents")


class Identity(Base):
    """A phone number, email address or SIP/client id of a customer, with its evidence.

    ``(kind, value)`` is unique: one number belongs to one customer row. ``shared`` marks a
    number known to be used by several people (a PBX trunk, a family line): contacts from it are
    never taken as proof of who is calling, and it never merges two customers.
    """

    __tablename__ = "identities"
    __table_args__ = (
        UniqueConstraint("kind", "value", name="uq_identities_kind_value"),
        Index("ix_identities_value", "value"),
        Index("ix_identities_customer", "customer_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(320))
    evidence: Mapped[str] = mapped_column(String(32))
    evidence_at: Mapped[datetime] = mapped_column(default=utcnow)
    shared: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    customer: Mapped[Customer] = relationship(back_populates="identities")


class Merge(Base):
    """Customer ``source_id`` merged into ``target_id``: what moved, so that it can be undone."""

    __tablename__ = "merges"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    target_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    moved: Mapped[dict[str, Any]] = mapped_column(default=dict)  # table -> row ids
    reason: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    undone_at: Mapped[datetime | None]


class Conversation(Base):
    """One matter across channels: a call, then a text, then a web page, for one customer.

    ``ref`` is the conversation id the live session carries (events name it). Once a
    conversation is closed, a new contact with the same ref starts a new row, one
    ``generation`` on (unique with the ref, so two writers cannot both start one).
    """

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("ref", "generation", name="uq_conversations_ref_generation"),
        Index("ix_conversations_customer_activity", "customer_id", "last_activity_at"),
        Index("ix_conversations_status_activity", "status", "last_activity_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(64))
    generation: Mapped[int] = mapped_column(default=0)  # the ref's rows so far, less one
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    status: Mapped[str] = mapped_column(String(16), default=ConversationStatus.ACTIVE.value)
    topic: Mapped[str | None] = mapped_column(String(200))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]


class Interaction(Base):
    """One contact on one channel: a call (by CallSid), a message (by MessageSid), a page visit."""

    __tablename__ = "interactions"
    __table_args__ = (
        UniqueConstraint("contact_sid", name="uq_interactions_contact_sid"),
        Index("ix_interactions_customer_started", "customer_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(16))  # voice, sms, email, web
    direction: Mapped[str] = mapped_column(String(16), default="inbound")
    contact_sid: Mapped[str] = mapped_column(String(64))
    flow_id: Mapped[str | None] = mapped_column(String(64))
    flow_version: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))
    last_node: Mapped[str | None] = mapped_column(String(64))
    agent: Mapped[str | None] = mapped_column(String(128))
    summary: Mapped[str | None] = mapped_column(Text)


class Event(Base):
    """One recorded moment of an interaction; ``stream_id`` (unique) makes a replay add nothing."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("stream_id", name="uq_events_stream_id"),
        Index("ix_events_interaction_at", "interaction_id", "at"),
        # the notes a customer card carries, found without reading every event
        Index(
            "ix_events_agent_notes",
            "interaction_id",
            postgresql_where=text("kind = 'agent_note'"),
            sqlite_where=text("kind = 'agent_note'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    stream_id: Mapped[str] = mapped_column(String(64))
    interaction_id: Mapped[int] = mapped_column(ForeignKey("interactions.id"))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(64))
    node: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DataRequest(Base):
    """A data-rights request carried out (an export or an erasure), kept without personal data:
    the subject is masked and ``counts`` says how many rows of each kind it touched."""

    __tablename__ = "data_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # export, erase
    subject: Mapped[str] = mapped_column(String(32))  # masked: ***0123
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Agent(Base):
    """A person who answers callers in the agent console.

    ``password_hash`` is werkzeug's scrypt hash (never the password); ``phone`` (E.164) or
    ``client`` (a Twilio Voice SDK identity) is where Take call connects a waiting caller.
    """

    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("name", name="uq_agents_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))  # the login name
    display_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(256))
    phone: Mapped[str | None] = mapped_column(String(32))
    client: Mapped[str | None] = mapped_column(String(128))
    supervisor: Mapped[bool] = mapped_column(default=False)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


class CallbackStatus(StrEnum):
    """A callback request's life."""

    OPEN = "open"
    DONE = "done"


class CallbackRequest(Base):
    """A caller asked to be called back (a flow's ``callback:`` node), until an agent does.

    ``stream_id`` (unique) is the event that asked, so a replayed event adds nothing.
    """

    __tablename__ = "callback_requests"
    __table_args__ = (
        UniqueConstraint("stream_id", name="uq_callback_requests_stream_id"),
        Index("ix_callback_requests_status_at", "status", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    stream_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    number: Mapped[str] = mapped_column(String(64))
    call_sid: Mapped[str | None] = mapped_column(String(64))
    handoff_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=CallbackStatus.OPEN.value)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None]
    done_by: Mapped[str | None] = mapped_column(String(64))
