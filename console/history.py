"""What the history database says about a call on the board, and the open callback requests.

A card's timeline shows the latest interactions of the caller's customer and the recorded
events of this call (names and times, no data: values there may be sensitive). The database is
a help, not a need: if it does not answer, the board is drawn from the live feed alone and the
failure is logged. Callback requests are read and marked done here too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from context.history.models import CallbackRequest, CallbackStatus, Event, Interaction

log = logging.getLogger("omnivoice.console")

INTERACTIONS = 5
EVENTS = 30
CALLBACKS = 100


@dataclass(frozen=True)
class Moment:
    """One line of a timeline."""

    at: float
    what: str
    detail: str = ""


@dataclass(frozen=True)
class Callback:
    """An open callback request."""

    id: int
    number: str
    reason: str | None
    call_sid: str | None
    at: float


def _epoch(moment: datetime | None) -> float:
    if moment is None:
        return 0.0
    if moment.tzinfo is None:  # SQLite gives naive datetimes back
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class ConsoleHistory:
    """Reads for the board, and the callback requests' Done."""

    def __init__(self, sessions: Callable[[], sessionmaker[Session]]) -> None:
        self.sessions = sessions

    def timeline(self, call_sid: str, customer: Any) -> list[Moment]:
        """The customer's latest interactions and this call's recorded events, oldest first."""
        try:
            with self.sessions()() as db:
                return self._timeline(db, call_sid, customer)
        except SQLAlchemyError as exc:
            log.warning("the board's timeline of %s is from the live feed only: %s", call_sid, exc)
            return []

    @staticmethod
    def _timeline(db: Session, call_sid: str, customer: Any) -> list[Moment]:
        moments: list[Moment] = []
        customer_id = customer if isinstance(customer, int) else None
        if isinstance(customer, str) and customer.isdigit():
            customer_id = int(customer)
        if customer_id is not None:
            rows = db.scalars(
                select(Interaction)
                .where(Interaction.customer_id == customer_id)
                .order_by(Interaction.started_at.desc())
                .limit(INTERACTIONS)
            )
            for row in rows:
                what = f"{row.direction} {row.channel}"
                detail = " · ".join(part for part in (row.outcome, row.agent, row.summary) if part)
                moments.append(Moment(_epoch(row.started_at), what, detail))
        events = db.execute(
            select(Event.at, Event.kind, Event.node)
            .join(Interaction, Event.interaction_id == Interaction.id)
            .where(Interaction.contact_sid == call_sid)
            .order_by(Event.at.desc())
            .limit(EVENTS)
        )
        for at, kind, node in events:
            moments.append(Moment(_epoch(at), kind, node or ""))
        return sorted(moments, key=lambda moment: moment.at)

    def open_callbacks(self) -> list[Callback]:
        """Open callback requests, oldest first (empty, logged, if the database is down)."""
        try:
            with self.sessions()() as db:
                rows = db.scalars(
                    select(CallbackRequest)
                    .where(CallbackRequest.status == CallbackStatus.OPEN.value)
                    .order_by(CallbackRequest.at)
                    .limit(CALLBACKS)
                )
                return [
                    Callback(row.id, row.number, row.reason, row.call_sid, _epoch(row.at))
                    for row in rows
                ]
        except SQLAlchemyError as exc:
            log.warning("the board shows no callback requests: %s", exc)
            return []

    def callback_done(self, callback_id: int, agent: str) -> bool:
        """Mark callback request ``callback_id`` done by ``agent``; ``False`` if not open.

        Raises:
            SQLAlchemyError: the database did not answer.
        """
        with self.sessions()() as db:
            row = db.get(CallbackRequest, callback_id)
            if row is None or row.status != CallbackStatus.OPEN.value:
                return False
            row.status = CallbackStatus.DONE.value
            row.done_by = agent
            row.done_at = datetime.now(UTC)
            db.commit()
            return True
