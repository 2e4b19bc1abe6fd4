"""Where an event goes, by what the session is waiting for: the one entry of the pure core.

:mod:`ivr.engine` answers a node's gather and a data dip, :mod:`ivr.resume` a returning caller's
"continue or start over?". Both build on the engine's runner, and neither imports this module, so
the two stay free of each other's imports. A resume code (``Waiting.RESUME_CODE``) needs the
session store to redeem it, so the shell handles it (:mod:`conversation.resume_codes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ivr import engine, resume
from ivr.errors import EngineError
from ivr.flow import Flow
from ivr.session import Session
from ivr.states import Status, Waiting
from ivr.turn import Answer, Event, Turn


def advance(
    flow: Flow, session: Session, event: Event, env: Mapping[str, Any] | None = None
) -> Turn:
    """Apply ``event`` to ``session`` on ``flow``, whatever the session waits for."""
    if session.waiting == Waiting.RESUME_OFFER and isinstance(event, Answer):
        if session.status != Status.ACTIVE:
            raise EngineError(f"The session is {session.status}; nothing is waiting for an answer.")
        moved_on = session.evolve(step=session.step + 1, updated_at=event.at)
        return resume.answer_offer(flow, moved_on, event, env)
    if session.waiting == Waiting.RESUME_CODE:
        raise EngineError("A resume code is redeemed by the shell, which can look it up.")
    return engine.step(flow, session, event, env)


def answerable(session: Session) -> bool:
    """True when the session waits for the caller's answer to something it asked (a wait for a
    page is polled through the same answer URL)."""
    return session.waiting in (Waiting.INPUT, Waiting.RESUME_OFFER, Waiting.PAGE)
