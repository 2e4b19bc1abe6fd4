"""The claim on one message, by its idempotency key: who is sending it, and whether it went.

A job queue delivers at least once (a worker killed mid-send gets its message redelivered), so
the sender first claims the key in Redis (``Keys.message_claim``):

- no claim: it becomes ``sending`` (``SET NX``), and the send goes ahead;
- ``sent`` (or another final state): the message went already; a redelivery stops here;
- ``sending``, taken less than ``busy_for`` seconds ago: another attempt may be sending it right
  now (the queue delivered a duplicate); this one is told ``busy`` and tries again later,
  leaving the claim as it is;
- ``sending``, older: an earlier attempt started and never finished (its worker died, or a
  timeout left it unknown whether the provider took it). The sender asks the provider when it
  can (Twilio: the texts sent to that number since the claim) before sending again.

Every claim expires (``ttl``), well after any redelivery could come.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from context.keys import Keys

SENDING = "sending"
DONE = "done"
BUSY = "busy"
CLAIM_TTL = 7 * 86400
BUSY_FOR = 30.0  # seconds a fresh claim is taken to mean "being sent right now"


@dataclass(frozen=True)
class Claim:
    """What a key's claim said when it was taken: ``None`` state means this attempt is first."""

    state: str | None
    at: float
    sid: str | None = None
    status: str | None = None  # a finished claim's outcome (sent, failed, opted_out)
    error_code: str | None = None
    error: str | None = None

    @property
    def first(self) -> bool:
        """Whether no attempt came before this one."""
        return self.state is None

    @property
    def busy(self) -> bool:
        """Whether another attempt took the claim moments ago (it may be sending now)."""
        return self.state == BUSY

    @property
    def done(self) -> bool:
        """Whether an earlier attempt finished (sent, or recorded as failed for good)."""
        return self.state == DONE


class Claims:
    """Message claims in Redis."""

    def __init__(
        self, client: Any, keys: Keys, ttl: int = CLAIM_TTL, busy_for: float = BUSY_FOR
    ) -> None:
        self.redis = client
        self.keys = keys
        self.ttl = ttl
        self.busy_for = busy_for

    def take(self, key: str, now: float) -> Claim:
        """Claim ``key`` for sending now; what an earlier claim said, if there was one."""
        name = self.keys.message_claim(key)
        mine = orjson.dumps({"state": SENDING, "at": now})
        if self.redis.set(name, mine, nx=True, ex=self.ttl):
            return Claim(None, now)
        raw = self.redis.get(name)
        if raw is None:  # expired in between: take it again
            self.redis.set(name, mine, ex=self.ttl)
            return Claim(None, now)
        earlier = orjson.loads(raw)
        last = float(earlier.get("retaken") or earlier.get("at") or 0)
        if earlier.get("state") == SENDING and now - last < self.busy_for:
            return Claim(BUSY, float(earlier.get("at") or 0))
        if earlier.get("state") != DONE:  # ours now; the earlier attempt's time is kept
            self.redis.set(
                name, orjson.dumps({**earlier, "state": SENDING, "retaken": now}), ex=self.ttl
            )
        return Claim(
            str(earlier.get("state")),
            float(earlier.get("at") or 0),
            earlier.get("sid"),
            earlier.get("status"),
            earlier.get("error_code"),
            earlier.get("error"),
        )

    def finish(
        self,
        key: str,
        now: float,
        sid: str | None = None,
        *,
        status: str = "sent",
        error_code: str | None = None,
        error: str | None = None,
    ) -> None:
        """Mark ``key`` as finished with (``status``): no later delivery sends it again."""
        record = {
            "state": DONE,
            "at": now,
            "sid": sid,
            "status": status,
            "error_code": error_code,
            "error": error,
        }
        self.redis.set(self.keys.message_claim(key), orjson.dumps(record), ex=self.ttl)

    def release(self, key: str) -> None:
        """Forget the claim on ``key``: the attempt certainly did not reach the provider."""
        self.redis.delete(self.keys.message_claim(key))
