"""A text that moves the flow on: the engine run from the node a flow's ``sms.replies`` names.

A caller in a conversation texts ``1``; the flow maps ``"1"`` to ``confirm``. The caller's
session (the live call's, or the one a finished call left) runs from that node on the SMS
channel, through :meth:`ConversationService.amend`: loaded, changed, saved with a
compare-and-set, retried on a lost race, and its events (the ``sms_received`` first, then what
the node recorded) reach the stream and the sinks once the save stood. The node's data dips run
within the request's budget, as on a call. The step moves on, so a gather the live call was
still listening to no longer answers for it: the call's next webhook asks what the node the
text reached asks. The reply is what the node says, rendered by the SMS renderer. A caller
handed over to a person (waiting in a queue, or with an agent) is not moved by a text.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from math import ceil
from typing import TYPE_CHECKING, Any

from conversation.dip_claims import StepClaimed, StepDips
from conversation.inbound import Inbound
from ivr import engine
from ivr.session import Session
from ivr.states import EventName, Status
from ivr.turn import Effect, Note

if TYPE_CHECKING:
    from conversation.service import ConversationService, Renderer

CLAIM_MARGIN = 5.0


def run(
    service: ConversationService,
    params: Inbound,
    node: str,
    renderer: Renderer,
    data: Mapping[str, Any],
    flow_id: str | None = None,
) -> str | None:
    """Run the caller's session (in flow ``flow_id``, also when it is kept aside) from
    ``node``; the rendered reply, or ``None`` when the caller has no session there (any more)
    or its flow has no such node."""
    deadline = time.monotonic() + service.turn_budget
    replies: list[str] = []

    def change(session: Session, now: float) -> tuple[Session, Sequence[Effect]] | None:
        replies.clear()
        if session.status == Status.TRANSFERRED:
            return None  # with an agent, or waiting for one: the flow is not theirs to move
        flow = service.versions.for_session(session)
        if flow is None or node not in flow.spec.nodes:
            return None
        moved = session.evolve(step=session.step + 1)
        turn = engine.start(
            flow, caller=session.caller, call_sid=session.call_sid, at=now, env=service.env,
            node=node, session=moved,
        )  # fmt: skip
        dips = StepDips(
            service.store, service.fetcher, session.caller, session.call_sid, moved.step,
            claim_ttl=ceil(service.turn_budget + CLAIM_MARGIN),
        )  # fmt: skip
        try:
            turn = service._settle(flow, turn, deadline, dips)
        except StepClaimed:  # another copy of this text holds the step: its dips are its own
            dips.yielded = True
            turn = service._settle(flow, turn, deadline, dips)
        replies.append(renderer.render(turn.actions, params.url_root, turn.session.step))
        received = Note(EventName.SMS_RECEIVED, {**data, "reply_node": node})
        return turn.session, (received, *turn.effects)

    saved = service.amend(params.caller.key, change, channel="sms", flow=flow_id)
    return replies[-1] if saved is not None and replies else None
