"""Failed console logins, counted in Redis per agent name and per client address.

Each failure bumps two per-minute counters (``Keys.login_failures(who, minute)``, each expiring
after the window): one for the name tried, one for the address it came from. A login is
refused, before its password is even checked, while either has reached its limit over the last
``window`` minutes (5 per name, 20 per address per 15 minutes by default), so a correct
password while limited is refused too and guessing gains nothing. A login is counted as failed
before its password is checked (and taken back if right), so guesses sent all at once cannot
all pass the check before the first is counted. The minutes of one ``who``
share its hash tag, so one ``MGET`` reads them on Redis Cluster as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from context.keys import Keys

WINDOW_MINUTES = 15
PER_NAME = 5
PER_ADDRESS = 20


@dataclass(frozen=True)
class Verdict:
    """Whether a login may be tried now, and else in how many seconds."""

    allowed: bool
    retry_after: int = 0


class LoginLimits:
    """Count failed logins and say when a name or an address must wait."""

    def __init__(
        self,
        connection: Any,
        keys: Keys,
        per_name: int = PER_NAME,
        per_address: int = PER_ADDRESS,
        window: int = WINDOW_MINUTES,
    ) -> None:
        self.redis = connection
        self.keys = keys
        self.per_name = per_name
        self.per_address = per_address
        self.window = window

    def check(self, name: str, address: str, now: float) -> Verdict:
        """Whether ``name`` may try to log in from ``address`` at ``now``.

        Raises:
            redis errors: Redis did not answer (the caller refuses the login).
        """
        waits = [
            self._wait(self._who("name", name), self.per_name, now),
            self._wait(self._who("addr", address), self.per_address, now),
        ]
        longest = max(waits)
        return Verdict(longest == 0, longest)

    def attempt(self, name: str, address: str, now: float) -> Verdict:
        """Count a login of ``name`` from ``address`` as failed before its password is checked,
        and say whether it may go on: tries sent at once are counted one by one (``INCR``), so
        no more of them reach the password check than the limits allow. A refused try is not
        counted; :meth:`succeeded` takes back the count of a right password.

        Raises:
            redis errors: Redis did not answer (the caller refuses the login).
        """
        minute = int(now // 60)
        ttl = (self.window + 1) * 60
        limited = (
            (self._who("name", name), self.per_name),
            (self._who("addr", address), self.per_address),
        )
        with self.redis.pipeline(transaction=False) as pipe:
            for who, _limit in limited:
                key = self.keys.login_failures(who, minute)
                pipe.incr(key)
                pipe.expire(key, ttl)
            counted = pipe.execute()[::2]  # this minute's count with this try, one by one
        earlier = range(minute - self.window + 1, minute)
        within = all(
            now_count + sum(int(v or 0) for v in self._counts(who, earlier)) <= limit
            for (who, limit), now_count in zip(limited, counted, strict=True)
        )
        if within:
            return Verdict(True)
        self.succeeded(name, address, now)
        return Verdict(False, max(1, self.check(name, address, now).retry_after))

    def _counts(self, who: str, minutes: range) -> list[Any]:
        if not minutes:
            return []
        return list(self.redis.mget([self.keys.login_failures(who, m) for m in minutes]))

    def succeeded(self, name: str, address: str, now: float) -> None:
        """Take back what :meth:`attempt` counted at ``now`` (the same minute's counters).

        Raises:
            redis errors: Redis did not answer.
        """
        minute = int(now // 60)
        with self.redis.pipeline(transaction=False) as pipe:
            for who in (self._who("name", name), self._who("addr", address)):
                pipe.decr(self.keys.login_failures(who, minute))
            pipe.execute()

    def failed(self, name: str, address: str, now: float) -> None:
        """Count one failed login of ``name`` from ``address``.

        Raises:
            redis errors: Redis did not answer.
        """
        minute = int(now // 60)
        ttl = (self.window + 1) * 60
        with self.redis.pipeline(transaction=False) as pipe:
            for who in (self._who("name", name), self._who("addr", address)):
                key = self.keys.login_failures(who, minute)
                pipe.incr(key)
                pipe.expire(key, ttl)
            pipe.execute()

    @staticmethod
    def _who(kind: str, value: str) -> str:
        return f"{kind}:{value.lower()[:128]}"

    def _wait(self, who: str, limit: int, now: float) -> int:
        """Seconds until ``who`` is below ``limit`` again (0: it is now)."""
        minute = int(now // 60)
        minutes = list(range(minute - self.window + 1, minute + 1))
        raw = self.redis.mget([self.keys.login_failures(who, m) for m in minutes])
        counts = [int(value or 0) for value in raw]
        total = sum(counts)
        if total < limit:
            return 0
        for first, count in zip(minutes, counts, strict=True):
            total -= count
            if total < limit:  # once this minute leaves the window
                return max(1, int((first + self.window) * 60 - now) + 1)
        return self.window * 60  # not reached: the loop ends below any positive limit
