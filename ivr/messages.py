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
from ivr.turn import SendMessage

KEPT = 20  # messages a session remembers (the oldest go first)
QUEUED = "queued"


def message_key(call_sid: str, step: int, node: str, channel: str) -> str:
    """The idempotency key of the message ``node`` sends on ``channel`` at ``step`` of a call."""
    digest = hashlib.sha256(f"{call_sid}\x00{step}\x00{node}\x00{channel}".encode()).hexdigest()
    return f"MK{digest[:30]}"


def queued(session: Session, message: SendMessage, at: float) -> Session:
    """The session with ``message`` known as queued (a retried turn changes nothing)."""
    if message.key in session.messages:
        return session
    entry = {"channel": message.channel, "status": QUEUED, "node": message.node, "at": at}
    kept = {**session.messages, message.key: entry}
    if len(kept) > KEPT:
        kept = dict(list(kept.items())[-KEPT:])
    return session.evolve(messages=kept)


def latest(session: Session, channel: str) -> dict[str, Any] | None:
    """What is known of the latest message on ``channel`` (``sms`` or ``email``), if any."""
    found = None
    for entry in session.messages.values():
        if isinstance(entry, dict) and entry.get("channel") == channel:
            found = entry
    return found
