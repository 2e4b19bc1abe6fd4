"""``POST /sms/status?k=KEY&c=CALLER``: Twilio's word on a text the job queue sent.

Each text's StatusCallback names its message (``k``, the idempotency key), the session it
belongs to (``c``, the session's key; ``s``, the call, when it had one; ``f``, its flow, whose
session is the one changed also when kept aside for a call to another number); the query is
covered by Twilio's signature, so none of it can be changed without the auth token. MessageStatus moves the
session's entry on (:func:`ivr.messages.update`: ``sent``, ``delivered``, ``undelivered``,
``failed``; never backwards, so callbacks arriving out of order do no harm) with MessageSid and
ErrorCode kept, recorded as ``message_delivered`` / ``message_failed``.

Answers: 204 once handled, also for a message or session no longer known (logged: Twilio reads
nothing back and a retry would not help); 400 for a request Twilio would never send (no key, a
status Twilio does not have); 403 unsigned (the front). Never a 500: a store that is down is
logged and answered 204 as well.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from ivr import messages
from ivr.errors import StoreUnavailable
from jobs.outcomes import Outcomes
from jobs.sms import STATUS_PATH
from webhooks.front import NO_CONTENT, BadRequest, Reply, Route, TwilioFront
from webhooks.request import WebhookRequest

if TYPE_CHECKING:
    from conversation.service import ConversationService

log = logging.getLogger(__name__)

# Twilio's MessageStatus values, as the session knows them (None: nothing to record yet).
TWILIO_STATUSES: dict[str, str | None] = {
    "accepted": None,
    "scheduled": None,
    "queued": None,
    "sending": None,
    "sent": messages.SENT,
    "delivered": messages.DELIVERED,
    "read": messages.DELIVERED,
    "undelivered": messages.NOT_DELIVERED,
    "failed": messages.FAILED,
    "canceled": messages.FAILED,
}
_KEY = re.compile(r"MK[0-9a-f]{30}")
MAX_CALLER = 128


def register(front: TwilioFront, service: ConversationService) -> None:
    """Serve ``/sms/status`` on ``front``."""
    views = SmsStatusViews(Outcomes(service))
    front.register(Route(STATUS_PATH, "sms.status", views.status, NO_CONTENT))


class SmsStatusViews:
    """Parse, record, answer 204."""

    def __init__(self, outcomes: Outcomes) -> None:
        self.outcomes = outcomes

    def status(self, request: WebhookRequest) -> Reply:
        """One status callback of one text."""
        key = request.arg("k") or ""
        caller = request.arg("c") or ""
        if not _KEY.fullmatch(key):
            raise BadRequest(400, "the message key (k) is missing or malformed")
        if not caller or len(caller) > MAX_CALLER:
            raise BadRequest(400, "the session (c) is missing")
        fields = request.fields()
        raw = (fields.get("MessageStatus") or "").strip().lower()
        if raw not in TWILIO_STATUSES:
            raise BadRequest(400, "MessageStatus is missing or not one Twilio sends")
        status = TWILIO_STATUSES[raw]
        if status is None:
            return NO_CONTENT
        sid = (fields.get("MessageSid") or fields.get("SmsSid") or "")[:64] or None
        code = (fields.get("ErrorCode") or "").strip()[:16] or None
        error = f"Twilio reports the text {raw} (error {code})" if code else None
        job = {
            "key": key, "caller": caller, "call_sid": request.arg("s"), "channel": "sms",
            "flow": request.arg("f"),
        }  # fmt: skip
        try:
            changed = self.outcomes.record(job, status, sid=sid, error_code=code, error=error)
        except StoreUnavailable as exc:
            log.error("status %s of message %s not recorded: %s", raw, key, exc)
            return NO_CONTENT
        if not changed:
            log.info("status %s of message %s: no such message or session, or not news", raw, key)
        return NO_CONTENT
