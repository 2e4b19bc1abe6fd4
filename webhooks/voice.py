"""The voice webhooks Twilio calls: ``/voice``, ``/voice/answer`` and ``/voice/status``.

:func:`register` adds them to the :class:`~webhooks.front.TwilioFront`, which reads the request,
checks its signature and times it. The views here only parse an
:class:`~conversation.inbound.Inbound` (:func:`webhooks.params.parse_call`), call the conversation
service (``incoming``, ``answer``, ``status``) and render its TwiML. A call
whose webhook fails hears a spoken apology and goes to a person (``FALLBACK_NUMBER`` /
``FALLBACK_QUEUE``); a failed status callback answers 204, which Twilio ignores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from context.outbound_tokens import OutboundTokens
from conversation.inbound import Inbound
from conversation.outbound import OUTBOUND_PATH
from ivr import languages
from webhooks import twiml
from webhooks.front import NO_CONTENT, BadRequest, Reply, Route, TwilioFront
from webhooks.front import twiml as twiml_reply
from webhooks.params import parse_call
from webhooks.request import WebhookRequest
from webhooks.voice_urls import ANSWER_PATH, INCOMING_PATH, STATUS_PATH
from webhooks.voice_urls import answer_url as answer_url  # the URL gathers post to

if TYPE_CHECKING:
    from conversation.service import ConversationService

NO_FLOW = "Sorry, this number is not in service right now."


GRANT_GONE = "Sorry, this call can't continue. Goodbye."


@dataclass(frozen=True)
class VoiceSettings:
    """What the voice views need from the app's configuration.

    ``steps`` are the gather steps the service's answer URLs can name; any other signed step is
    a request Twilio never sends (400).
    """

    steps: range
    default_region: str = "US"
    fallback_number: str | None = None
    fallback_queue: str | None = None
    tokens: OutboundTokens | None = None  # redeems outbound calls' grants (None: no outbound)


def register(
    front: TwilioFront, service: ConversationService, settings: VoiceSettings
) -> VoiceViews:
    """Serve the voice webhooks on ``front``, answered by ``service``; the views, for the
    transfer webhooks (:mod:`webhooks.transfer_webhooks`) to share."""
    views = VoiceViews(service, settings)
    apology, own = views.fallback(), views.apology_for
    front.register(Route(INCOMING_PATH, "voice.incoming", views.incoming, apology, own))
    front.register(Route(OUTBOUND_PATH, "voice.outbound", views.outbound, apology, own))
    front.register(Route(ANSWER_PATH, "voice.answer", views.answer, apology, own))
    front.register(Route(STATUS_PATH, "voice.status", views.status, NO_CONTENT))
    return views


class VoiceViews:
    """The voice views: parse, call the service, render."""

    def __init__(self, service: ConversationService, settings: VoiceSettings) -> None:
        self.service = service
        self.settings = settings

    def incoming(self, request: WebhookRequest) -> Reply:
        """A call arrived: run the flow for the called number (``To``), else the default flow."""
        reply = self.service.incoming(self.params(request))
        return twiml_reply(reply) if reply is not None else self.fallback(NO_FLOW)

    def answer(self, request: WebhookRequest) -> Reply:
        """What the caller keyed or said (or nothing) in reply to the gather asked at ``step``."""
        step = _step(request.arg("step"))
        if step is not None and step not in self.settings.steps:
            # Only answer URLs this server wrote are signed, and they never name such a step.
            raise BadRequest(400, "step out of range")
        params = self.params(request)
        service = self.service
        reply = service.incoming(params) if step is None else service.answer(params, step)
        return twiml_reply(reply) if reply is not None else self.fallback(NO_FLOW)

    def outbound(self, request: WebhookRequest) -> Reply:
        """A call we placed was answered: run the flow its signed, single-use grant names."""
        params = self.params(request)
        tokens = self.settings.tokens
        grant = tokens.redeem(request.arg("t") or "", params.contact_id) if tokens else None
        if grant is None:  # forged, expired, or already used by another call
            return twiml_reply(twiml.hangup(GRANT_GONE))
        reply = self.service.outbound(params, grant)
        return twiml_reply(reply) if reply is not None else self.fallback(NO_FLOW)

    def status(self, request: WebhookRequest) -> Reply:
        """Twilio's status callback: record how the call ended."""
        self.service.status(self.params(request))
        return NO_CONTENT

    def params(self, request: WebhookRequest) -> Inbound:
        """The call's parameters; 400 without a ``CallSid``."""
        params = parse_call(request.fields(), self.settings.default_region, request.root)
        if not params.contact_id:
            # Twilio always sends a CallSid; without one there is no call to keep state for.
            raise BadRequest(400, "CallSid is missing")
        return params

    def fallback(self, reason: str = twiml.APOLOGY, language: str | None = None) -> Reply:
        """A spoken ``reason``, then a person (or a goodbye when none is configured)."""
        settings = self.settings
        return twiml_reply(
            twiml.fallback(settings.fallback_number, settings.fallback_queue, reason, language)
        )

    def apology_for(self, request: WebhookRequest) -> Reply:
        """The fallback in the words of the called number's flow (``messages: {apology: ...}``,
        per language), spoken in the flow's language."""
        flow = self.service.catalog.for_number(request.fields().get("To"))
        if flow is None:
            return self.fallback()
        _voice, language = languages.speaking(flow, {})
        words = languages.message(flow, "apology", twiml.APOLOGY, language)
        return self.fallback(words or twiml.APOLOGY, language)


def _step(raw: str | None) -> int | None:
    """The ``step`` query parameter as a number; anything else is no step at all."""
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None
