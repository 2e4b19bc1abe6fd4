"""The loop every consumer of the event stream runs: the history writer, the handoff webhook and
the outbox relay.

A consumer says what one pass does (:meth:`StreamLoop.run_once`: read, handle, acknowledge; the
number of entries finished). :meth:`StreamLoop.drain` runs passes until one finds nothing (tests,
``flask --app app worker --once``); :meth:`StreamLoop.run` runs them until told to stop, pausing
when caught up, and never dies: a failure (Redis or SQL down, anything else) is logged once, the
loop backs off (doubling, up to 10 s) and says so when it works again. A consumer may ask for a
pause after a pass that did something (:meth:`StreamLoop.linger`), to let its next batch fill.
"""

from __future__ import annotations

import logging
import threading
from typing import ClassVar

MAX_PAUSE = 10.0  # seconds between tries while something the consumer needs is down


class StreamLoop:
    """A consumer of the event stream, run pass after pass."""

    what: ClassVar[str] = "a stream consumer"  # who is speaking in the log
    trouble: ClassVar[str] = "cannot read the event stream"  # what the log says on a failure
    recovered: ClassVar[str] = "is working again"  # and once a pass works again
    idle: ClassVar[float] = 0.2  # seconds to pause when a pass found nothing

    def run_once(self) -> int:
        """One pass; the number of entries finished with."""
        raise NotImplementedError

    def linger(self, done: int) -> float:
        """Seconds to wait after a pass that finished ``done`` entries (at least one) before the
        next: none, so a consumer keeps up entry by entry; a consumer whose passes cost more
        than their entries (the history writer) waits for a fuller batch."""
        return 0.0

    def failure(self, exc: Exception) -> str:
        """What the log says of a failed pass."""
        return str(exc)

    def drain(self, limit: int = 10_000) -> int:
        """Run passes until one finds nothing to do (or ``limit`` entries); entries finished."""
        total = 0
        while total < limit:
            done = self.run_once()
            if not done:
                return total
            total += done
        return total

    def run(self, stop: threading.Event, idle: float | None = None) -> None:
        """Run passes until ``stop`` is set (see the module's docstring)."""
        log = logging.getLogger(type(self).__module__)  # the consumer's own logger
        rest = self.idle if idle is None else idle
        pause = rest
        failing = False
        while not stop.is_set():
            try:
                done = self.run_once()
            except Exception as exc:  # never die: try again after a pause
                if not failing:
                    log.error("%s %s, will retry: %s", self.what, self.trouble, self.failure(exc))
                failing = True
                pause = min(pause * 2, MAX_PAUSE)
                stop.wait(pause)
                continue
            if failing:
                log.info("%s %s", self.what, self.recovered)
                failing = False
            pause = rest
            if not done:
                stop.wait(rest)
            elif (wait := self.linger(done)) > 0:
                stop.wait(wait)
