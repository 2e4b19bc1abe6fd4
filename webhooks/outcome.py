"""What one webhook exchange decided (see :class:`webhooks.calls.CallService`)."""

from __future__ import annotations

from dataclasses import dataclass

from ivr.flow import Flow
from ivr.turn import Turn


@dataclass(frozen=True)
class Outcome:
    """What one exchange decided: a ready reply, or a turn to settle, render and save."""

    reply: str | None = None
    flow: Flow | None = None
    turn: Turn | None = None
    also_delete: tuple[str, ...] = ()


NO_FLOW = Outcome()
