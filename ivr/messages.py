"""Messages a flow sends (texts and emails), as the session keeps them.

``session.messages`` maps each message's idempotency key to what is known of it: its channel,
node, status and, once known, the provider's id and the error. The latest text and the latest
email are what a flow reads as ``sms`` and ``email`` (``{{ sms.status }}``: ``queued``, ``sent``,
``delivered``, ``failed``, ``undelivered`` or ``opted_out``), so it can branch at its next step
("I couldn't text you; shall I email it instead?").
"""

from __future__ import annotations

import hashlib
from typing import Any

from ivr.session import Session
from ivr.states import EventName
from ivr.turn import Note, SendMessage

KEPT = 20  # messages a session remembers (the oldest go first)
QUEUED = "queued"
FAILED = "failed"


def message_key(call_sid: str, step: int, node: str, channel: str) -> str:
    """The idempotency key of the message ``node`` sends on ``channel`` at ``step`` of a call."""
    digest = hashlib.sha256(f"{call_sid}\x00{step}\x00{node}\x00{channel}".encode()).hexdigest()
    return f"MK{digest[:30]}"


def queued(session: Session, message: SendMessage, at: float) -> Session:
    """The session with ``message`` known as queued (a retried turn changes nothing)."""
    if message.key in session.messages:
        return session
    entry: dict[str, Any] = {
        "channel": message.channel, "status": QUEUED, "node": message.node, "at": at,
    }  # fmt: skip
    if message.links:
        entry["pages"] = sorted({link.page for link in message.links})
    kept = {**session.messages, message.key: entry}
    if len(kept) > KEPT:
        kept = dict(list(kept.items())[-KEPT:])
    return session.evolve(messages=kept)


def unsent(
    session: Session, key: str, channel: str, reason: str, at: float
) -> tuple[Session, Note]:
    """The session with a message that could not even be queued known as failed, and the
    ``message_failed`` event that says why."""
    entry = {"channel": channel, "status": FAILED, "node": session.node, "at": at, "error": reason}
    kept = dict(list({**session.messages, key: entry}.items())[-KEPT:])
    note = Note(
        EventName.MESSAGE_FAILED,
        {"key": key, "channel": channel, "node": session.node, "status": FAILED, "error": reason},
    )
    return session.evolve(messages=kept), note


UNDELIVERED = frozenset({"failed", "undelivered", "opted_out"})


def page_unreachable(session: Session, page: str) -> bool:
    """True when every message that carried a link to ``page`` failed to reach the caller (and
    there was at least one): waiting for the page is pointless."""
    carried = [
        entry.get("status")
        for entry in session.messages.values()
        if isinstance(entry, dict) and page in (entry.get("pages") or ())
    ]
    return bool(carried) and all(status in UNDELIVERED for status in carried)


def scope(session: Session) -> dict[str, Any]:
    """What a flow reads of its messages: ``sms`` and ``email`` (the latest of each, or
    empty) and ``messages`` (both, by channel)."""
    sms, email = latest(session, "sms") or {}, latest(session, "email") or {}
    return {"sms": sms, "email": email, "messages": {"sms": sms, "email": email}}


NOTHING_SENT: dict[str, Any] = {"sms": {}, "email": {}, "messages": {"sms": {}, "email": {}}}


def latest(session: Session, channel: str) -> dict[str, Any] | None:
    """What is known of the latest message on ``channel`` (``sms`` or ``email``), if any."""
    found = None
    for entry in session.messages.values():
        if isinstance(entry, dict) and entry.get("channel") == channel:
            found = entry
    return found


# ---- what happened to a message --------------------------------------------------------------
SENT = "sent"
DELIVERED = "delivered"
NOT_DELIVERED = "undelivered"  # Twilio gave up on it (UNDELIVERED above: every unhappy end)
OPTED_OUT = "opted_out"
STATUSES = (QUEUED, SENT, DELIVERED, FAILED, NOT_DELIVERED, OPTED_OUT)
# How far along each status is: a status never gives way to one less far along (Twilio's
# callbacks can arrive out of order, and the worker's "sent" after Twilio's "delivered").
_RANK = {QUEUED: 0, SENT: 1, DELIVERED: 2, FAILED: 2, NOT_DELIVERED: 2, OPTED_OUT: 2}
EVENTS = {
    SENT: EventName.MESSAGE_SENT,
    DELIVERED: EventName.MESSAGE_DELIVERED,
    FAILED: EventName.MESSAGE_FAILED,
    NOT_DELIVERED: EventName.MESSAGE_FAILED,
    OPTED_OUT: EventName.MESSAGE_OPTED_OUT,
}
MAX_ERROR = 200  # characters of an error sentence kept


def update(
    session: Session,
    key: str,
    status: str,
    at: float,
    *,
    sid: str | None = None,
    error_code: str | int | None = None,
    error: str | None = None,
) -> tuple[Session, Note] | None:
    """The session with message ``key`` moved to ``status``, and the event that records it.

    ``None`` when nothing changes: the session does not know the message, the status is not
    one of :data:`STATUSES`, or it is not further along than the one known (a late
    ``sent`` after ``delivered``, a ``queued`` after ``sent``).
    """
    entry = session.messages.get(key)
    if not isinstance(entry, dict) or status not in _RANK or status == QUEUED:
        return None
    known = entry.get("status")
    if _RANK.get(known, 0) >= _RANK[status]:  # type: ignore[arg-type]
        return None
    changed = {**entry, "status": status, "at": at}
    if sid:
        changed["sid"] = sid
    if error_code is not None and error_code != "":
        changed["error_code"] = str(error_code)
    if error:
        changed["error"] = error[:MAX_ERROR]
    session = session.evolve(messages={**session.messages, key: changed})
    note = Note(
        EVENTS[status],
        {
            "key": key,
            "channel": changed.get("channel"),
            "node": changed.get("node"),
            "status": status,
            "sid": changed.get("sid"),
            "error_code": changed.get("error_code"),
            "error": changed.get("error"),
        },
    )
    return session, note
