"""The event sink that feeds agents: handoff bundles and the events a console shows.

After a turn's save stood, its handoffs are kept by id and by CallSid
(:class:`~context.handoffs.HandoffStore`) and the events agents watch are appended to the
agents' feed (:mod:`context.agent_feed`), all in one round trip, and only for turns that have
any: a webhook that hands nobody over and ends no transferred call costs nothing here.
The events are the masked ones every sink gets, so nothing sensitive reaches a console.
"""

from __future__ import annotations

from collections.abc import Sequence

from context.handoffs import HandoffStore
from conversation.events import ConversationEvent
from ivr.states import EventName, Status

FEED_EVENTS = frozenset(
    {
        EventName.HANDOFF,
        EventName.TRANSFER_RESULT,
        EventName.CALLBACK_REQUESTED,
        EventName.QUEUE_WAITING,
        EventName.CALL_TAKEN,
        EventName.TAKE_FAILED,
        EventName.AGENT_NOTE,
        # what became of a page sent to the caller, for the agent's screen-pop
        EventName.MESSAGE_SENT,
        EventName.MESSAGE_FAILED,
        EventName.MESSAGE_OPTED_OUT,
        EventName.PAGE_OPENED,
        EventName.PAGE_SUBMITTED,
        # a voicemail left after a transfer nobody took, and what Twilio later says of it
        EventName.RECORDING,
    }
)


def for_agents(event: ConversationEvent) -> bool:
    """Whether a console shows ``event`` (the end of a call counts once it was transferred)."""
    if event.name in FEED_EVENTS:
        return True
    return event.name == EventName.CALL_ENDED and event.data.get("status") == Status.TRANSFERRED


class FeedSink:
    """Publishes handoffs and agents' events (see the module docstring)."""

    def __init__(self, handoffs: HandoffStore) -> None:
        self.handoffs = handoffs

    def emit(self, events: Sequence[ConversationEvent]) -> None:
        shown = [event for event in events if for_agents(event)]
        if not shown:
            return
        bundles = [
            event.data["bundle"]
            for event in shown
            if event.name == EventName.HANDOFF and isinstance(event.data.get("bundle"), dict)
        ]
        self.handoffs.publish(bundles, [event.to_dict() for event in shown])
