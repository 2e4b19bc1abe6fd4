"""Side-effecting data dips run at most once per (call, step), and say so to the back-end.

Twilio can deliver the same answer several times at once (a retry, a fallback URL, a proxy
replaying); each copy loads the same session and, unguarded, would run the same ``POST``. Any
dip whose method is not ``GET`` is side-effecting: before the first one of an exchange runs, the
exchange claims its (call, step) in Redis (``SET NX`` on :meth:`Keys.dip_claim`, under the
caller's hash tag, living as long as the cached reply). The holder runs the dips and saves the
reply as usual; a request that finds the step claimed raises :class:`StepClaimed`, and the
conversation service waits for the holder's reply, then answers as for any duplicate. Every
side-effecting dip carries an ``Idempotency-Key`` header made from (call, step, node, visit),
the same for every retry of that dip and different for any other, so a back-end can also drop a
repeat that reaches it some other way (a holder that died after the dip and before its save).
An exchange that saves again after losing a race reuses its dips' results: it never posts twice.
``GET`` dips are neither claimed nor keyed, so a webhook without side effects keeps its two
Redis round trips.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

from context.sessions import SessionStore
from data_dips.http import Fetcher
from ivr.turn import FetchResult, HttpRequest

IDEMPOTENCY_HEADER = "Idempotency-Key"
_NAMESPACE = uuid.UUID("7d0f3c52-5b8e-4f8f-9f5e-6a1d2c3b4a59")  # Omnivoice's data dips
CLAIMED_ELSEWHERE = "another request for this step is running its data dip"


class StepClaimed(Exception):
    """Another request holds the claim on this (call, step): its reply is the one to send."""


def idempotency_key(call_sid: str, step: int, node: str, visit: int = 0) -> str:
    """The ``Idempotency-Key`` of the ``visit``-th dip at ``node`` in ``step`` of a call (a UUID)."""
    return str(uuid.uuid5(_NAMESPACE, f"{call_sid}\n{step}\n{node}\n{visit}"))


@dataclass
class StepDips:
    """The data dips of one exchange (one webhook): side-effecting ones claimed once, run once."""

    store: SessionStore
    fetcher: Fetcher
    caller: str
    call_sid: str
    step: int
    claim_ttl: int = 16  # seconds: the holder's request budget and a margin
    claimed: bool = False
    yielded: bool = False  # the claim's holder never answered: side effects are given up
    results: dict[str, FetchResult] = field(default_factory=dict)

    def fetch(self, request: HttpRequest, node: str, visit: int, at: float) -> FetchResult:
        """Run ``request``, the ``visit``-th dip at ``node`` this turn.

        Raises:
            StepClaimed: it is side-effecting and another request holds this step.
        """
        if request.method == "GET":
            return self.fetcher.fetch(request)
        key = idempotency_key(self.call_sid, self.step, node, visit)
        if key in self.results:  # a second decision after a lost save: the dip already ran
            return self.results[key]
        if self.yielded:
            return FetchResult(ok=False, error=CLAIMED_ELSEWHERE, at=at)
        if not self.claimed:
            if not self.store.claim_step(self.caller, self.call_sid, self.step, self.claim_ttl):
                raise StepClaimed(self.call_sid)
            self.claimed = True
        keyed = replace(request, headers={**request.headers, IDEMPOTENCY_HEADER: key})
        result = self.fetcher.fetch(keyed)
        self.results[key] = result
        return result
