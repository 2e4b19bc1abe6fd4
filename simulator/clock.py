"""The time a simulated call pretends it is: ``flask call --at 2026-12-24T18:00 --after 5m``.

:class:`PretendClock` reads the moment it was set to and runs on in real time from there;
:meth:`PretendClock.advance` jumps ahead (the caller calls back later). :func:`install` makes it
the in-process app's clock for calls, so business hours, ``now`` and resume windows can be
tried without waiting. The flow engine never reads a clock: it gets each turn's time from the
conversation service, and this replaces the service's clock only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo


class PretendClock:
    """A clock that reads ``start`` now and keeps running; ``advance`` jumps it ahead."""

    def __init__(self, start: float, real: Callable[[], float] = time.time) -> None:
        self._real = real
        self._offset = start - real()

    def __call__(self) -> float:
        return self._real() + self._offset

    def advance(self, seconds: float) -> None:
        """Jump ``seconds`` ahead (a caller who hangs up and calls back later)."""
        self._offset += seconds


def moment(text: str, zone: str | None) -> float:
    """Epoch seconds of ``text`` (ISO 8601); without an offset it is read in ``zone`` (or UTC).

    Raises:
        ValueError: ``text`` is not an ISO date and time.
    """
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date and time such as 2026-12-24T18:00 (in the flow's time "
            "zone) or 2026-12-24T18:00-05:00."
        ) from None
    if found.tzinfo is None:
        found = found.replace(tzinfo=ZoneInfo(zone or "UTC"))
    return found.timestamp()


def install(app: Any, clock: Callable[[], float]) -> None:
    """Make ``clock`` the time of calls (and of resume codes) in the in-process ``app``."""
    service = app.extensions["omnivoice.calls"]
    service.clock = clock
    service.codes.clock = clock
