"""What one attempt to send a message came to, in words the worker and the session share.

A sender answers every attempt with a :class:`Sent`, or raises :class:`Transient` (try again
later, with backoff) or :class:`Permanent` (record it now: trying again will not help).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ivr.errors import OmnivoiceError


@dataclass(frozen=True)
class Sent:
    """The provider took the message; ``sid`` is its id for it (a Twilio SID, a Message-ID)."""

    sid: str | None
    found: bool = False  # found already sent by an earlier attempt (no second send)


class SendFailed(OmnivoiceError):
    """An attempt that did not send; ``code`` is the provider's error code, if it gave one."""

    def __init__(self, message: str, code: str | None = None, *, reached: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.reached = reached  # the provider may have taken it (a timeout after sending)


class Transient(SendFailed):
    """A failure that may pass: a rate limit, a server error, a timeout, no connection."""


class Busy(Transient):
    """Another attempt is sending this message right now: try again later, record nothing."""


class Permanent(SendFailed):
    """A failure that will not pass: an invalid number, an unsubscribed recipient, a 5xx SMTP reply."""


class TextSending(Protocol):
    """What sends texts: Twilio (:class:`jobs.sms.SmsSender`), or the demo's outbox."""

    def send(
        self,
        to: str,
        body: str,
        key: str,
        caller: str = "",
        call_sid: str | None = None,
        flow: str | None = None,
    ) -> Sent: ...

    def already_sent(self, to: str, body: Callable[[str], bool], since: float) -> str | None: ...


class EmailSending(Protocol):
    """What sends emails: an SMTP server (:class:`jobs.email.EmailSender`), or the outbox."""

    def send(self, to: str, subject: str, text: str, html: str | None, key: str) -> Sent: ...
