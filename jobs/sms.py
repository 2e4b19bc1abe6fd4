"""Texts through Twilio's Messages API (the SDK), with what a redelivered job needs to ask.

``send`` posts To, Body, From (``TWILIO_PHONE_NUMBER``) or MessagingServiceSid
(``TWILIO_MESSAGING_SERVICE_SID``, preferred when both are set) and a StatusCallback of
``{PUBLIC_BASE_URL}/sms/status?k=KEY&c=CALLER&s=CALL`` so Twilio's later word on the text (delivered,
undelivered) reaches the session. ``already_sent`` looks through the latest texts to a number
for one with the same body (its links aside) created since a claim: how a job whose worker died mid-send finds
out whether Twilio took it before sending it again.

Errors (``TwilioServiceException`` is not a ``TwilioRestException``: both are caught as
``TwilioException``): 429, 5xx, timeouts and connection errors are :class:`Transient`; any other
4xx (21211 invalid number, 21610 unsubscribed recipient, 21408 no permission for the region)
is :class:`Permanent`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import requests
from twilio.base.exceptions import TwilioException

from context.callers import masked
from jobs.outcome import Permanent, Sent, Transient

log = logging.getLogger(__name__)

STATUS_PATH = "/sms/status"
RECENT = 20  # texts to a number looked through when reconciling
CLOCK_SKEW = 120.0  # seconds: Twilio's clock and ours may differ this much
_NUMBER = re.compile(r"\+?[0-9][0-9 ().\-]{5,}[0-9]")  # a phone number in an error sentence


class SmsSender:
    """Sends texts with a Twilio REST client (made on first use by ``client``)."""

    def __init__(
        self,
        client: Callable[[], Any],
        from_number: str | None,
        messaging_service_sid: str | None,
        public_base_url: str | None,
    ) -> None:
        self.client = client
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.base = (public_base_url or "").rstrip("/")

    def status_callback(
        self, key: str, caller: str, call_sid: str | None, flow: str | None = None
    ) -> str | None:
        """Where Twilio reports on message ``key`` of session ``caller`` in ``flow`` (none
        without ``PUBLIC_BASE_URL``)."""
        if not self.base:
            return None
        query = {
            "k": key, "c": caller,
            **({"s": call_sid} if call_sid else {}), **({"f": flow} if flow else {}),
        }  # fmt: skip
        return f"{self.base}{STATUS_PATH}?{urlencode(query)}"

    def send(
        self,
        to: str,
        body: str,
        key: str,
        caller: str = "",
        call_sid: str | None = None,
        flow: str | None = None,
    ) -> Sent:
        """Send ``body`` to ``to`` once.

        Raises:
            Transient: try again later.
            Permanent: record the failure.
        """
        sender: dict[str, str] = {}
        if self.messaging_service_sid:
            sender["messaging_service_sid"] = self.messaging_service_sid
        elif self.from_number:
            sender["from_"] = self.from_number
        else:
            raise Permanent(
                "neither TWILIO_PHONE_NUMBER nor TWILIO_MESSAGING_SERVICE_SID is set: no number "
                "to text from"
            )
        callback = self.status_callback(key, caller, call_sid, flow) if caller else None
        if callback:
            sender["status_callback"] = callback
        try:
            message = self.client().messages.create(to=to, body=body, **sender)
        except TwilioException as exc:
            raise _classified(exc) from exc
        except (requests.Timeout, requests.ConnectionError) as exc:
            reached = isinstance(exc, requests.ReadTimeout)
            raise Transient(
                f"Twilio did not answer: {type(exc).__name__}", reached=reached
            ) from exc
        return Sent(str(message.sid))

    def already_sent(self, to: str, body: Callable[[str], bool], since: float) -> str | None:
        """The SID of a text to ``to`` created since ``since`` whose body ``body`` recognises,
        if Twilio has one (a link's URL is signed anew by each attempt, so bodies are matched
        with their links left open).

        Raises:
            Transient: Twilio cannot be asked now.
        """
        try:
            recent = self.client().messages.list(to=to, limit=RECENT)
        except TwilioException as exc:
            raise Transient(f"Twilio cannot list the texts sent: {_describe(exc)}") from exc
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise Transient(f"Twilio did not answer: {type(exc).__name__}") from exc
        for message in recent:
            created = message.date_created
            if not isinstance(created, datetime) or not body(str(message.body or "")):
                continue
            if created.timestamp() >= since - CLOCK_SKEW:
                return str(message.sid)
        return None


def _classified(exc: TwilioException) -> Transient | Permanent:
    status = getattr(exc, "status", None)
    code = getattr(exc, "code", None)
    code_text = str(code) if code is not None else None
    why = _describe(exc)
    if isinstance(status, int) and 400 <= status < 500 and status not in (408, 429):
        return Permanent(f"Twilio refused the text: {why}", code_text)
    return Transient(f"Twilio could not take the text now: {why}", code_text)


def _describe(exc: TwilioException) -> str:
    """A short sentence for an SDK error (its ``str`` is coloured for terminals)."""
    status = getattr(exc, "status", None)
    code = getattr(exc, "code", None)
    text = getattr(exc, "msg", None) or getattr(exc, "detail", None) or getattr(exc, "title", "")
    text = str(text).splitlines()[0] if text else type(exc).__name__
    text = _NUMBER.sub(lambda found: masked(found.group(0)), text)  # Twilio names the To number
    return f"HTTP {status}, error {code}: {text}"[:200]
