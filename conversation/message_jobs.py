"""What a message to send looks like on its way to the job queue (the outbox).

A turn's :class:`~ivr.turn.SendMessage` is recorded as a ``message_queued`` event with the save
that made it (so a message is never sent for a turn whose save lost, and never lost for one that
stood). Events are masked and kept in the history, while a text must go out as written, so the
event carries the *job* sealed (Fernet, :mod:`context.sealing`): the full message, who it is for
and which session it belongs to. The relay (:mod:`jobs.relay`) opens it and hands it to the
queue. Its data::

    {"key": "MK...", "channel": "sms", "node": "offer_link", "to": "+1415***0100",
     "links": ["LK..."], "via": "flow", "job": "gAAAA..."}
"""

from __future__ import annotations

from typing import Any

import orjson

from context.callers import masked
from context.sealing import Sealer
from ivr.session import Session
from ivr.turn import SendMessage

JOB_VERSION = 1


def job_of(message: SendMessage, session: Session, via: str = "flow") -> dict[str, Any]:
    """The job a sender needs: the message in full, and whose session it belongs to."""
    return {
        "v": JOB_VERSION,
        "key": message.key,
        "channel": message.channel,
        "to": message.to,
        "body": message.body,
        "subject": message.subject,
        "html": message.html,
        "node": message.node,
        "links": [
            {"id": link.id, "page": link.page, "expires": link.expires} for link in message.links
        ],
        "caller": session.caller,
        "flow": session.flow_id,
        "conversation": session.conversation,
        "call_sid": session.call_sid,
        "via": via,
    }


def queued_event_data(
    message: SendMessage, session: Session, sealer: Sealer, via: str = "flow"
) -> dict[str, Any]:
    """The data of the ``message_queued`` event that carries ``message`` to the queue."""
    shown = masked(message.to) if message.channel == "sms" else _masked_address(message.to)
    return {
        "key": message.key,
        "channel": message.channel,
        "node": message.node,
        "to": shown,
        "links": [link.id for link in message.links],
        "via": via,
        "job": sealer.seal(orjson.dumps(job_of(message, session, via))),
    }


def open_job(data: dict[str, Any], sealer: Sealer) -> dict[str, Any]:
    """The job inside a ``message_queued`` event's data.

    Raises:
        SealBroken: the job was tampered with or sealed with a key no longer configured.
        ValueError: the event carries no job of a known version.
    """
    sealed = data.get("job")
    if not isinstance(sealed, str):
        raise ValueError("the event carries no job")
    job = orjson.loads(sealer.open(sealed))
    if not isinstance(job, dict) or job.get("v") != JOB_VERSION:
        raise ValueError("the job is not of a known version")
    return job


def _masked_address(address: str) -> str:
    """An email address with most of its local part hidden: ``j***@example.com``."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"
