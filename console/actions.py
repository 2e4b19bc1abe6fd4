"""What an agent does from the console: take a waiting call, write a note and disposition.

Both become events of the event schema (version 1, see :mod:`conversation.events`), carrying the
call's caller key, CallSid, conversation, flow and version from its handoff, and are appended to
the main event stream (the history writer records them in SQL and on the customer card) and to
the agents' feed (every console sees them live). Taking a call moves the caller with Twilio's
REST API (``calls(sid).update(twiml=...)``) to a ``<Dial>`` of the agent; if Twilio refuses or
does not answer, the caller stays where they were, a ``take_failed`` event says so, and the
agent is told why. One agent at a time takes a caller: the first Take call holds the handoff
for its agent (a short-lived Redis key), and another agent's is refused meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from twilio.base.exceptions import TwilioException

from console.agents import AgentView
from context.agent_feed import AgentFeed
from context.event_stream import EventStream
from context.sessions import SessionStore
from ivr.errors import Refused
from ivr.states import EventName
from webhooks import twiml

log = logging.getLogger("omnivoice.console")

DISPOSITIONS = ("resolved", "follow_up", "escalated", "callback", "other")
MAX_NOTE = 2000
# How long a Take call holds the caller for its agent: two agents pressing at once must not
# both move the caller (the second would pull them from the first one's ringing phone). Past
# the agent's ring time the transfer's result has moved the board's card on.
TAKE_CLAIM_SECONDS = 2 * twiml.AGENT_RING_SECONDS + 20
SCHEMA_VERSION = 1


class ActionRefused(Refused):
    """An agent's action was not done; ``message`` is for the agent, ``status`` for HTTP."""


@dataclass(frozen=True)
class CallRef:
    """What an action needs to know of a call: who, which conversation and flow, which handoff."""

    call_sid: str
    caller: str
    conversation: str
    flow: str | None
    version: str | None
    handoff_id: str | None


def call_ref(
    call_sid: str, handoff: Mapping[str, Any] | None, caller_key: str | None = None
) -> CallRef:
    """The call ``call_sid`` as its latest handoff bundle describes it.

    ``caller_key`` is the session's caller key as the handoff event named it (a caller without
    caller ID is keyed by CallSid); without it, the bundle's caller number.

    Raises:
        ActionRefused: the call was never handed over to agents (404).
    """
    if not handoff:
        raise ActionRefused(404, f"Call {call_sid} was not handed over to agents.")
    caller = _mapping(handoff.get("caller"))
    flow = _mapping(handoff.get("flow"))
    return CallRef(
        call_sid=call_sid,
        caller=caller_key or str(caller.get("number") or call_sid),
        conversation=str(handoff.get("conversation") or ""),
        flow=flow.get("id"),
        version=flow.get("version"),
        handoff_id=str(handoff.get("id") or "") or None,
    )


def event_doc(ref: CallRef, name: EventName, at: float, data: dict[str, Any]) -> dict[str, Any]:
    """An event of ``ref``'s call in the event schema, version 1."""
    return {
        "v": SCHEMA_VERSION,
        "name": name.value,
        "at": at,
        "channel": "voice",
        "caller": ref.caller,
        "call_sid": ref.call_sid,
        "conversation": ref.conversation,
        "flow": ref.flow,
        "version": ref.version,
        "node": None,
        "data": data,
    }


class AgentActions:
    """Take calls and record notes, for the console's views."""

    def __init__(
        self,
        events: EventStream,
        feed: AgentFeed,
        store: SessionStore,
        twilio: Callable[[], Any],
        public_base_url: str | None,
        clock: Callable[[], float],
        twilio_ready: bool = True,
    ) -> None:
        self.events = events
        self.twilio_ready = twilio_ready
        self.feed = feed
        self.store = store
        self.twilio = twilio
        self.root = (public_base_url or "").rstrip("/")
        self.clock = clock

    def record(self, ref: CallRef, name: EventName, data: dict[str, Any]) -> dict[str, Any]:
        """Append one event of ``ref``'s call to the event stream and the feed."""
        doc = event_doc(ref, name, self.clock(), data)
        self.events.append(ref.caller, [self.events.encode(doc)])
        self.feed.append([doc])
        return doc

    def note(self, ref: CallRef, agent: AgentView, text: str, disposition: str | None) -> None:
        """Record ``agent``'s note and disposition on the call.

        Raises:
            ActionRefused: no note and no disposition, a note too long, an unknown disposition.
        """
        text = text.strip()
        if disposition == "":
            disposition = None
        if not text and disposition is None:
            raise ActionRefused(400, "Write a note or choose a disposition: both are empty.")
        if len(text) > MAX_NOTE:
            raise ActionRefused(
                400, f"The note has {len(text)} characters; at most {MAX_NOTE} are kept."
            )
        if disposition is not None and disposition not in DISPOSITIONS:
            raise ActionRefused(
                400, f"{disposition!r} is not a disposition: use one of {', '.join(DISPOSITIONS)}."
            )
        data = {
            "agent": agent.name,
            "text": text,
            "disposition": disposition,
            "handoff_id": ref.handoff_id,
        }
        self.record(ref, EventName.AGENT_NOTE, data)

    def take(self, ref: CallRef, agent: AgentView, fallback_root: str = "") -> str:
        """Move the waiting caller of ``ref`` to ``agent``; where the agent is rung.

        The TwiML's URLs are under ``PUBLIC_BASE_URL``, else under ``fallback_root`` (the
        console's own address, which serves the voice URLs too).

        Raises:
            ActionRefused: the agent has nowhere to ring, the call's session is gone, or Twilio
                refused (a ``take_failed`` event is recorded; the caller stays where they were).
        """
        to = f"client:{agent.client}" if agent.client else agent.phone
        if not to:
            raise ActionRefused(
                409,
                "You have no phone number or Voice SDK client set, so a call cannot be put "
                "through to you; ask an administrator to run: flask --app app agents add ... "
                "--phone +1... (or --client ...).",
            )
        if not self.twilio_ready:
            raise ActionRefused(
                503,
                "Calls cannot be moved: TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set "
                "on this server.",
            )
        loaded = self.store.load(ref.caller, ref.call_sid)
        session = loaded.session
        if session is None or session.call_sid != ref.call_sid:
            raise ActionRefused(409, f"Call {ref.call_sid} is no longer in progress.")
        claim = self.store.keys.take_claim(ref.call_sid, ref.handoff_id or "")
        if not self.store.redis.set(claim, agent.name, nx=True, ex=TAKE_CLAIM_SECONDS):
            holder = self.store.redis.get(claim)
            who = holder.decode() if isinstance(holder, bytes) else str(holder or "another agent")
            raise ActionRefused(409, f"This caller is already being put through to {who}.")
        document = twiml.take_call(
            self.root or fallback_root.rstrip("/"),
            session.step,
            ref.handoff_id or "",
            agent.client,
            agent.phone,
        )
        try:
            self.twilio().calls(ref.call_sid).update(twiml=document)
        except (TwilioException, requests.RequestException) as exc:
            error = _twilio_error(exc)
            log.warning("taking call %s for %s failed: %s", ref.call_sid, agent.name, error)
            self.store.redis.delete(claim)  # nobody took the caller: another agent may try
            failed = {"agent": agent.name, "handoff_id": ref.handoff_id, "error": error}
            self.record(ref, EventName.TAKE_FAILED, failed)
            raise ActionRefused(
                502,
                f"Twilio could not put the call through to you ({error}); the caller is "
                "still waiting where they were.",
            ) from None
        self.record(
            ref, EventName.CALL_TAKEN, {"agent": agent.name, "handoff_id": ref.handoff_id, "to": to}
        )
        return to


def _twilio_error(exc: Exception) -> str:
    """A short description of what Twilio (or the network to it) said."""
    if isinstance(exc, requests.RequestException):
        return f"no answer from Twilio ({type(exc).__name__})"
    status = getattr(exc, "status", None)
    code = getattr(exc, "code", None)
    text = str(exc).strip()
    message = getattr(exc, "msg", None) or (text.splitlines()[0] if text else type(exc).__name__)
    parts = [
        f"HTTP {status}" if status else "",
        f"error {code}" if code else "",
        str(message)[:200],
    ]
    return ", ".join(part for part in parts if part)


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}
