"""The event schema, and the sinks events go to once the save of their turn stood.

Every event a turn records (a :class:`~ivr.turn.Note`, a handoff) becomes one
:class:`ConversationEvent`, version 1 of the documented schema (README, "Events")::

    {"v": 1, "name": "resume_offer", "at": 1764581234.5, "channel": "voice",
     "caller": "+14155550100", "call_sid": "CA...", "conversation": "9f3c...",
     "flow": "airline", "version": "3b2a...", "node": "main_menu", "data": {...}}

``data`` never holds a ``sensitive`` variable's value in clear: keys naming one, and any text
equal to one of the session's sensitive values, read ``"***"``.

The event stream (Redis Streams) is written by the session store with the save itself (see
:mod:`context.event_stream`); the sinks here run in the process after the save: a structured log
line per event and the Prometheus metrics. Sinks must not raise: a failing sink is logged and the
others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from context.callers import masked
from context.sealing import Sealer
from conversation.message_jobs import queued_event_data
from ivr import sensitive
from ivr.flow import Flow
from ivr.session import Session
from ivr.states import EventName
from ivr.turn import AttachHandoff, Effect, Note, RequestCallback, SendMessage

log = logging.getLogger("omnivoice.calls")

SCHEMA_VERSION = 1
MASK = "***"
BUNDLE = "bundle"  # a handoff event's bundle (ivr.handoff), masked when it was built


@dataclass(frozen=True)
class ConversationEvent:
    """One event of one conversation, in the documented schema."""

    name: EventName
    at: float
    caller: str
    call_sid: str
    channel: str = "voice"
    conversation: str = ""
    flow: str | None = None
    version: str | None = None
    node: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The event as its JSON document (schema version 1)."""
        return {
            "v": SCHEMA_VERSION,
            "name": self.name.value,
            "at": self.at,
            "channel": self.channel,
            "caller": self.caller,
            "call_sid": self.call_sid,
            "conversation": self.conversation,
            "flow": self.flow,
            "version": self.version,
            "node": self.node,
            "data": self.data,
        }


class EventSink(Protocol):
    """Where events go after their turn's save stood."""

    def emit(self, events: Sequence[ConversationEvent]) -> None:
        """Take ``events`` (in order); never raise."""


class LogSink:
    """One structured log line per event, with the CallSid and a masked caller.

    ``info`` writes one INFO line of the ``omnivoice.calls`` logger from its message and
    ``extra`` fields: by default ``log.info``; the app passes the structured logs' quicker
    writer of the same line (:class:`webhooks.logs.QuickInfo`).
    """

    def __init__(self, info: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.info = info or (lambda message, extra: log.info(message, extra=extra))

    def emit(self, events: Sequence[ConversationEvent]) -> None:
        info = self.info
        for event in events:
            info(
                event.name.value,
                {"call_sid": event.call_sid, "caller": masked(event.caller), "data": event.data},
            )


class MemorySink:
    """Keeps every event in a list: the in-memory fake for tests and the simulator."""

    def __init__(self) -> None:
        self.events: list[ConversationEvent] = []

    def emit(self, events: Sequence[ConversationEvent]) -> None:
        self.events.extend(events)

    def names(self) -> list[str]:
        """The names of the events so far, in order."""
        return [event.name.value for event in self.events]


def emit_all(sinks: Iterable[EventSink], events: Sequence[ConversationEvent]) -> None:
    """Give ``events`` to every sink; one failing sink does not stop the others."""
    if not events:
        return
    for sink in sinks:
        try:
            sink.emit(events)
        except Exception:
            log.exception("event sink %s failed", type(sink).__name__)


def from_effects(
    effects: Iterable[Effect | Note],
    session: Session,
    flow: Flow | None,
    at: float,
    channel: str = "voice",
    sealer: Sealer | None = None,
) -> list[ConversationEvent]:
    """The events a turn's effects record, about ``session`` (after the turn).

    A message to send becomes a ``message_queued`` event carrying its job sealed with
    ``sealer`` (see :mod:`conversation.message_jobs`); without a sealer it is not recorded.
    """
    secrets = _sensitive_values(session, flow)
    names = session.sensitive or (tuple(flow.spec.sensitive) if flow is not None else ())
    events = []
    for effect in effects:
        if isinstance(effect, Note):
            name, data = effect.name, effect.data
        elif isinstance(effect, AttachHandoff):
            name, bundle = EventName.HANDOFF, effect.bundle
            route = bundle.get("route") or {}
            data = {
                "handoff_id": bundle.get("id"),
                "route": route.get("kind"),
                "target": route.get("target"),
                "reason": bundle.get("reason"),
                "bundle": bundle,
            }
        elif isinstance(effect, SendMessage):
            if sealer is None:
                log.error("message %s not queued: no sealer to carry it", effect.key)
                continue
            name = EventName.MESSAGE_QUEUED
            data = queued_event_data(effect, session, sealer, _via(effect))
        elif isinstance(effect, RequestCallback):
            name = EventName.CALLBACK_REQUESTED
            data = {
                "number": effect.number,
                "reason": effect.reason,
                "handoff_id": effect.handoff_id,
            }
        else:
            continue
        node = data.get("node") if isinstance(data.get("node"), str) else session.node
        events.append(
            ConversationEvent(
                name=name,
                at=at,
                caller=session.caller,
                call_sid=session.call_sid,
                channel=channel,
                conversation=session.conversation,
                flow=session.flow_id,
                version=session.flow_version,
                node=node,
                data=_masked(data, names, secrets) if (names or secrets) else dict(data),
            )
        )
    return events


def _via(message: SendMessage) -> str:
    """Who sent a message: an agent's action names its node ``agent:<name>``."""
    return "agent" if message.node.startswith("agent:") else "flow"


def _sensitive_values(session: Session, flow: Flow | None) -> set[str]:
    """The text of every sensitive value the session holds (to mask wherever it appears)."""
    paths = session.sensitive or (tuple(flow.spec.sensitive) if flow is not None else ())
    if not paths and not session.held:
        return set()
    _, taken = sensitive.take(paths, session.variables)
    found = [*taken.values(), *session.held.values()]
    found += [v for k, v in session.handoff.items() if sensitive.covers(paths, k)]
    return set(sensitive.texts(found))


def _masked(value: Any, names: Iterable[str], secrets: set[str]) -> Any:
    if isinstance(value, Mapping):
        return {
            key: MASK
            if sensitive.covers(names, key)
            else item
            if key == BUNDLE  # masked by the engine already, its own counts kept as numbers
            else _masked(item, names, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_masked(item, names, secrets) for item in value]
    if isinstance(value, str):
        if value in secrets:
            return MASK
        for secret in secrets:  # a template that put a sensitive value into a sentence
            if len(secret) >= 4 and secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and str(value) in secrets:
        return MASK
    return value
