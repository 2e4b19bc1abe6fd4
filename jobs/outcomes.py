"""A message's outcome, into the caller's session and the event stream.

Through :meth:`ConversationService.amend`: the session's ``messages`` entry moves on
(:func:`ivr.messages.update`, which never moves a status backwards) and the change is recorded
as ``message_sent``, ``message_delivered``, ``message_failed`` or ``message_opted_out`` with the
save. An outcome the session cannot take (the message is not in it, e.g. a job that could not be
opened) can still be recorded as an event, with ``force``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ivr import messages
from ivr.session import Session
from ivr.turn import Note

if TYPE_CHECKING:
    from conversation.service import ConversationService

log = logging.getLogger(__name__)

_EVENTS = messages.EVENTS


class Outcomes:
    """Records what became of messages, on the sessions they belong to."""

    def __init__(self, service: ConversationService) -> None:
        self.service = service

    def record(
        self,
        job: Mapping[str, Any],
        status: str,
        *,
        sid: str | None = None,
        error_code: str | None = None,
        error: str | None = None,
        force: bool = False,
    ) -> bool:
        """Move message ``job["key"]`` of session ``job["caller"]`` to ``status``; whether a
        change was saved.

        Raises:
            StoreUnavailable: Redis does not answer (the caller of this retries).
        """
        key = str(job.get("key") or "")
        caller = str(job.get("caller") or "")
        if not key or not caller:
            log.error("message outcome %s for an unnamed message or caller: dropped", status)
            return False

        def change(session: Session, now: float) -> tuple[Session, tuple[Note, ...]] | None:
            updated = messages.update(
                session, key, status, now, sid=sid, error_code=error_code, error=error
            )
            if updated is not None:
                return updated[0], (updated[1],)
            if not force or status not in _EVENTS:
                return None
            data = {
                "key": key,
                "channel": job.get("channel"),
                "node": job.get("node"),
                "status": status,
                "sid": sid,
                "error_code": error_code,
                "error": error,
            }
            return session, (Note(_EVENTS[status], data),)

        channel = str(job.get("channel") or "sms")
        flow = str(job.get("flow") or "") or None  # its flow's session, also when kept aside
        saved = self.service.amend(
            caller, change, job.get("call_sid") or None, channel=channel, flow=flow
        )
        if saved is None:
            log.info("message %s: %s not recorded (no such session, or nothing new)", key, status)
            return False
        return True
