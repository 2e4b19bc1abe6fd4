"""Reaching out first: outbound calls that run a flow, and outbound texts.

:meth:`OutboundService.place` checks a request in the order a careful dialer does (a usable
number, a flow or a body, consent for the purpose, the recipient's quiet hours, pacing) and
refuses with the reason and an HTTP-like status. A call is placed with Twilio's REST API (the
SDK), pointing Twilio at ``/voice/outbound`` with a signed single-use grant that names the flow
and its variables, with answering-machine detection on, so the flow can branch on
``answered_by``. Every attempt, refused, failed or placed, is recorded on the event stream, so
the history and the customer's next contact know of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker
from twilio.base.exceptions import TwilioException
from twilio.rest import Client

from context.callers import masked, to_e164
from context.event_stream import EventStream
from context.history import consents
from context.outbound_tokens import Grant, OutboundTokens
from conversation.events import ConversationEvent
from conversation.outbound_rules import QuietHours, quiet_refusal
from ivr.catalog import Catalog
from ivr.errors import OmnivoiceError
from ivr.states import EventName

log = logging.getLogger("omnivoice.outbound")

MAX_SMS = 1600  # characters Twilio accepts in one message body
OUTBOUND_PATH = "/voice/outbound"


def outbound_conversation(sid: str) -> str:
    """The conversation id of an outbound contact (its call's or message's SID)."""
    return f"outbound:{sid}"


def outbound_event(
    name: EventName,
    number: str,
    sid: str,
    at: float,
    data: Mapping[str, Any],
    channel: Literal["voice", "sms"] = "voice",
    flow: str | None = None,
) -> ConversationEvent:
    """An event about an outbound contact, marked ``direction: outbound`` for the history."""
    return ConversationEvent(
        name=name,
        at=at,
        caller=number,
        call_sid=sid,
        channel=channel,
        conversation=outbound_conversation(sid),
        flow=flow,
        data={"direction": "outbound", **data},
    )


class OutboundRefused(OmnivoiceError):
    """An outbound request that was not carried out: ``status`` (HTTP) and a sentence why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class OutboundRequest:
    """Reach ``to`` on ``channel``: a call running ``flow`` with ``variables``, or a text."""

    to: str
    channel: Literal["voice", "sms"] = "voice"
    flow: str | None = None
    variables: Mapping[str, Any] = field(default_factory=dict)
    purpose: str = consents.SERVICE
    body: str | None = None


@dataclass(frozen=True)
class Placed:
    """What Twilio took: the call's or message's SID."""

    sid: str
    channel: str
    to: str


@dataclass(frozen=True)
class OutboundSettings:
    """Where calls come from and where Twilio finds us, and how fast we may go."""

    from_number: str | None
    public_base_url: str | None
    quiet_hours: QuietHours
    per_second: int = 1  # Twilio's default: one call per second per account
    default_region: str = "US"


class OutboundService:
    """Places outbound calls and texts, after checking they may be made."""

    def __init__(
        self,
        catalog: Catalog,
        tokens: OutboundTokens,
        history: Callable[[], sessionmaker[DbSession]],
        stream: EventStream,
        twilio: Callable[[], Client],
        settings: OutboundSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.catalog = catalog
        self.tokens = tokens
        self.history = history
        self.stream = stream
        self.twilio = twilio
        self.settings = settings
        self.clock = clock

    def place(self, request: OutboundRequest) -> Placed:
        """Make the call or send the text.

        Raises:
            OutboundRefused: the request was refused (and recorded when its number is usable).
        """
        number = to_e164(request.to, self.settings.default_region)
        if number is None:
            raise OutboundRefused(400, f"{request.to[:40]!r} is not a phone number")
        grant = Grant(
            flow=request.flow or "", to=number, purpose=request.purpose,
            variables=dict(request.variables),
        )  # fmt: skip
        try:
            self._check(request, number)
            return self._send(request, number, grant)
        except OutboundRefused as refused:
            name = (
                EventName.OUTBOUND_FAILED if refused.status == 502 else EventName.OUTBOUND_REFUSED
            )
            self._record(name, number, f"OB{grant.id}", request, {"reason": refused.reason})
            log.info("outbound %s to %s refused: %s", request.channel, masked(number), refused)
            raise

    # ---- the checks, in order ---------------------------------------------------------------
    def _check(self, request: OutboundRequest, number: str) -> None:
        if request.channel == "voice" and (not request.flow or not self.catalog.get(request.flow)):
            raise OutboundRefused(404, f"there is no flow named {request.flow!r}")
        if request.channel == "sms" and not (request.body and request.body.strip()):
            raise OutboundRefused(400, "a text needs a body")
        if request.channel == "sms" and len(request.body or "") > MAX_SMS:
            raise OutboundRefused(400, f"a text may have at most {MAX_SMS} characters")
        if not self.settings.from_number or not self.settings.public_base_url:
            raise OutboundRefused(
                503, "TWILIO_PHONE_NUMBER and PUBLIC_BASE_URL must be set to reach out"
            )
        try:
            with self.history()() as db:
                decision = consents.decide(db, number, request.channel, request.purpose)
        except SQLAlchemyError as exc:
            log.error("consent cannot be checked: %s", type(exc).__name__)
            raise OutboundRefused(
                503, "consent cannot be checked: the history database does not answer"
            ) from None
        if not decision.allowed:
            raise OutboundRefused(403, f"{decision.reason}")
        quiet = quiet_refusal(number, decision.time_zone, self.settings.quiet_hours, self.clock())
        if quiet:
            raise OutboundRefused(409, quiet)
        self._pace(request.channel)

    def _pace(self, channel: str) -> None:
        """At most ``per_second`` contacts per second per channel, across every process."""
        second = int(self.clock())
        key = self.stream.keys.outbound_pace(second, channel)
        try:
            with self.stream.redis.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, 5)
                count = int(pipe.execute()[0])
        except redis.RedisError:  # an outage or a refusal: we cannot tell how many went out
            raise OutboundRefused(503, "pacing cannot be checked: Redis does not answer") from None
        if count > self.settings.per_second:
            raise OutboundRefused(
                429,
                f"pacing: at most {self.settings.per_second} {channel} contact(s) a second; "
                "try again in a second",
            )

    # ---- Twilio ---------------------------------------------------------------------------
    def _send(self, request: OutboundRequest, number: str, grant: Grant) -> Placed:
        base = (self.settings.public_base_url or "").rstrip("/")
        client = self.twilio()
        try:
            if request.channel == "voice":
                call = client.calls.create(
                    to=number,
                    from_=self.settings.from_number,
                    url=f"{base}{OUTBOUND_PATH}?t={self.tokens.sign(grant)}",
                    method="POST",
                    status_callback=f"{base}/voice/status",
                    machine_detection="Enable",
                )
                sid, name = str(call.sid), EventName.OUTBOUND_REQUESTED
            else:
                message = client.messages.create(
                    to=number, from_=self.settings.from_number, body=request.body
                )
                sid, name = str(message.sid), EventName.OUTBOUND_SENT
        except TwilioException as exc:  # TwilioServiceException is not a TwilioRestException
            code = getattr(exc, "code", None)
            text = getattr(exc, "msg", None) or str(exc).splitlines()[0][:200]
            raise OutboundRefused(502, f"Twilio refused it: {code or ''} {text}".strip()) from None
        self._record(name, number, sid, request, {})
        return Placed(sid, request.channel, number)

    def _record(
        self,
        name: EventName,
        number: str,
        sid: str,
        request: OutboundRequest,
        data: dict[str, Any],
    ) -> None:
        event = outbound_event(
            name, number, sid, self.clock(), {"purpose": request.purpose, **data},
            request.channel, request.flow,
        )  # fmt: skip
        self.stream.append(number, [self.stream.encode(event.to_dict())])
