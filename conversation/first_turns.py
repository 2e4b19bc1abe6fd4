"""Whether a new call's first turn is worth trying in one round trip.

A call from a caller Redis knows nothing about (no session, no customer card) needs no load:
its first turn is the flow's fresh start whatever a load would say. The conversation service
can work that turn out first and send it with :meth:`context.sessions.SessionStore.start`,
which saves it only if the load would indeed have found nothing, and otherwise returns what the
load would have: one round trip for a new caller, still two for a known one. A known caller's
try costs the fresh turn worked out for nothing (about as much CPU as the round trip it saves
a new caller), so a process tries while most of its recent tries stood, and otherwise only
every :attr:`FirstTurns.probe_every`-th call, to notice when new callers come back.
"""

from __future__ import annotations

RATE_WEIGHT = 1 / 16  # how much the latest try counts in the running rate
WORTH_IT = 0.5  # tries stand at least this often: keep trying
PROBE_EVERY = 16  # else one call in this many tries anyway
CLOCK_KEPT = 30.0
"""Seconds a try may go by Redis's clock as a load read it: the save's deadline is set in
Redis's time (see :class:`context.sessions.RedisClock`), and a server whose clock was stepped,
or another one after a failover, would put it off by as much. A process that only meets new
callers loads, and so reads the clock anew, once in this many seconds."""


class FirstTurns:
    """The running rate of first turns that stood in one round trip, and what it advises.

    Shared by a process's threads: a lost update of the rate (two threads at once) only
    moves the estimate a little, so no lock is taken on the webhook's path.
    """

    def __init__(
        self,
        weight: float = RATE_WEIGHT,
        worth_it: float = WORTH_IT,
        probe_every: int = PROBE_EVERY,
    ) -> None:
        self.weight = weight
        self.worth_it = worth_it
        self.probe_every = probe_every
        self.rate = 1.0  # new callers are the common case until tries say otherwise
        self._passed = 0  # calls not tried since the last try

    def worth_trying(self, clock_age: float | None) -> bool:
        """Try this call's first turn in one round trip, with Redis's clock read ``clock_age``
        seconds ago (``None``: not read yet)?"""
        if clock_age is None or clock_age > CLOCK_KEPT:
            return False
        if self.rate >= self.worth_it:
            return True
        self._passed += 1
        if self._passed >= self.probe_every:
            self._passed = 0
            return True
        return False

    def record(self, stood: bool) -> None:
        """A try's result: ``stood`` when the first turn was saved in its one round trip."""
        self.rate += self.weight * ((1.0 if stood else 0.0) - self.rate)
