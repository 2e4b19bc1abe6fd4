"""The webhooks of a transfer: its result, a queued caller's hold loop, an agent's whisper.

- ``/voice/transfer?step=N``: a transfer's ``action``. Twilio's ``QueueResult`` or
  ``DialCallStatus`` becomes a :class:`~ivr.states.TransferResult` and the conversation service
  routes the caller (no answer, busy, queue full, waited too long → the node the flow names).
- ``/voice/wait?flow=&node=&h=``: a queued caller's ``waitUrl``, asked again each time its TwiML
  ends. It plays the transfer node's ``hold`` prompt (``{{ queue.position }}``...) and
  ``hold_music``, tells the agents' feed where the caller is in line, and once ``max_wait`` has
  passed makes the caller leave the queue (the flow's ``waited_too_long`` node). It loads no
  session: one feed append per pass.
- ``/voice/whisper?h=``: what a dialled agent hears before the caller is connected: the
  handoff's one-sentence summary (a generic sentence if the bundle cannot be read).

All three are Twilio-signed (the URLs, queries included, were written by this server) and
never answer with an error: a failed result webhook hears the voice apology, a failed hold pass
a plain hold, a failed whisper the generic sentence.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from conversation.events import ConversationEvent, emit_all
from ivr import engine
from ivr.catalog import Catalog
from ivr.errors import StoreUnavailable
from ivr.states import EventName
from webhooks import twiml
from webhooks.front import BadRequest, Reply, Route, TwilioFront
from webhooks.front import twiml as twiml_reply
from webhooks.params import queue_state, transfer_result
from webhooks.request import WebhookRequest
from webhooks.voice_urls import TRANSFER_PATH, WAIT_PATH, WHISPER_PATH

if TYPE_CHECKING:
    from context.handoffs import HandoffStore
    from conversation.service import ConversationService
    from webhooks.voice import VoiceViews

log = logging.getLogger("omnivoice.transfers")

WHISPER_DEFAULT = "A caller from the automated line is being connected to you now."
_HANDOFF_ID = re.compile(r"^HO[0-9a-f]{32}$")


def register(
    front: TwilioFront,
    voice: VoiceViews,
    handoffs: HandoffStore,
) -> None:
    """Serve the transfer webhooks on ``front``."""
    views = TransferViews(voice, handoffs)
    front.register(Route(TRANSFER_PATH, "voice.transfer", views.result, voice.fallback()))
    front.register(
        Route(WAIT_PATH, "voice.wait", views.wait, twiml_reply(twiml.hold_loop((), None)))
    )
    front.register(
        Route(
            WHISPER_PATH,
            "voice.whisper",
            views.whisper,
            twiml_reply(twiml.whisper(WHISPER_DEFAULT)),
        )
    )


class TransferViews:
    """Parse, call the service (or read the bundle), render."""

    def __init__(self, voice: VoiceViews, handoffs: HandoffStore) -> None:
        self.voice = voice
        self.service: ConversationService = voice.service
        self.catalog: Catalog = voice.service.catalog
        self.handoffs = handoffs

    def result(self, request: WebhookRequest) -> Reply:
        """How a transfer ended; the flow decides what the caller hears next."""
        raw = request.arg("step")
        step = int(raw) if raw is not None and raw.lstrip("-").isdigit() else None
        if step is None or step not in self.voice.settings.steps:
            raise BadRequest(400, "step missing or out of range")
        params = self.voice.params(request)
        reply = self.service.transfer_result(params, step, transfer_result(request.fields()))
        return twiml_reply(reply) if reply is not None else self.voice.fallback()

    def wait(self, request: WebhookRequest) -> Reply:
        """One pass of a queued caller's hold loop."""
        params = self.voice.params(request)
        fields = request.fields()
        queue = queue_state(fields)
        flow = self.catalog.get(request.arg("flow") or "")
        node = request.arg("node") or ""
        spec = flow.spec.nodes[node].transfer if flow and node in flow.spec.nodes else None
        handoff_id = request.arg("h") or ""
        waited = queue["wait"] or 0
        leave = spec is not None and spec.max_wait is not None and waited >= spec.max_wait
        event = ConversationEvent(
            name=EventName.QUEUE_WAITING,
            at=self.service.clock(),
            caller=params.caller.key,
            call_sid=params.contact_id,
            flow=flow.id if flow else None,
            version=flow.version if flow else None,
            node=node or None,
            data={
                "handoff_id": handoff_id if _HANDOFF_ID.match(handoff_id) else None,
                "position": queue["position"],
                "wait_seconds": queue["wait"],
                "size": queue["size"],
                "leaving": leave,
            },
        )
        emit_all(self.service.sinks, [event])
        if flow is None or spec is None:
            return twiml_reply(twiml.hold_loop((), None))  # a flow since changed: plain hold
        parts = engine.hold_prompt(flow, node, {**queue, "wait": waited})
        return twiml_reply(twiml.hold_loop(parts, spec.hold_music, leave))

    def whisper(self, request: WebhookRequest) -> Reply:
        """The sentence a dialled agent hears before the caller is connected."""
        handoff_id = request.arg("h") or ""
        sentence = WHISPER_DEFAULT
        if _HANDOFF_ID.match(handoff_id):
            try:
                found = self.handoffs.get(handoff_id)
            except StoreUnavailable as exc:
                log.error("whisper without its handoff: %s", exc)
                found = None
            summary = found.get("summary") if found else None
            if isinstance(summary, str) and summary.strip():
                sentence = summary
        return twiml_reply(twiml.whisper(sentence))
