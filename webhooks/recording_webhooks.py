"""The webhooks of a record node: the message itself, and Twilio's later word on it.

- ``/voice/record?step=N``: a ``<Record>``'s ``action`` (RecordingUrl, RecordingDuration,
  Digits), and the redirect after it when nothing was recorded. The conversation service keeps
  the recording on the session and the flow goes on from the record node.
- ``/voice/recording?node=&c=``: the recording's status callback (RecordingStatus completed,
  absent or failed, the final URL and duration) and, for ``transcribe: true``, its transcription
  callback. Neither carries the caller, so the URL names the session's key; both are
  Twilio-signed (the query cannot be changed without the auth token) and answered with 204.

Neither answers with an error: a failed message webhook hears the voice apology, a failed
status callback gets its 204 all the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from webhooks.front import NO_CONTENT, BadRequest, Reply, Route, TwilioFront
from webhooks.front import twiml as twiml_reply
from webhooks.params import parse_call, recorded, recording_update
from webhooks.request import WebhookRequest
from webhooks.voice_urls import RECORD_PATH, RECORDING_PATH

if TYPE_CHECKING:
    from conversation.service import ConversationService
    from webhooks.voice import VoiceViews

MAX_NODE = 64  # a node name's longest (ivr.schema.NodeName)


def register(front: TwilioFront, voice: VoiceViews) -> None:
    """Serve the record webhooks on ``front``."""
    views = RecordingViews(voice)
    front.register(Route(RECORD_PATH, "voice.record", views.message, voice.fallback()))
    front.register(Route(RECORDING_PATH, "voice.recording", views.status, NO_CONTENT))


class RecordingViews:
    """Parse, call the service, render."""

    def __init__(self, voice: VoiceViews) -> None:
        self.voice = voice
        self.service: ConversationService = voice.service

    def message(self, request: WebhookRequest) -> Reply:
        """The caller's message (or none); the flow decides what the caller hears next."""
        raw = request.arg("step")
        step = int(raw) if raw is not None and raw.lstrip("-").isdigit() else None
        if step is None or step not in self.voice.settings.steps:
            raise BadRequest(400, "step missing or out of range")
        params = self.voice.params(request)
        reply = self.service.recorded(params, step, recorded(request.fields(), 0.0))
        return twiml_reply(reply) if reply is not None else self.voice.fallback()

    def status(self, request: WebhookRequest) -> Reply:
        """A recording's status or transcription: kept on the session, recorded as an event."""
        node = request.arg("node") or ""
        caller = request.arg("c") or ""
        if not node or len(node) > MAX_NODE or not caller:
            raise BadRequest(400, "node or caller missing")
        fields = {**request.fields(), "From": caller}
        params = parse_call(fields, self.voice.settings.default_region, request.root)
        if not params.contact_id:
            raise BadRequest(400, "CallSid is missing")
        self.service.recording_status(params, node, recording_update(fields))
        return NO_CONTENT
