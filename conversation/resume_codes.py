"""Resume codes: how a caller without caller ID picks up where they left off.

Such a caller is keyed by CallSid, so the next call cannot find them by number. At their first
question they hear a six-digit code, claimed with SET NX (no two callers share one) for the
flow's resume window plus the longest call, and cut back to the resume window when the call ends.
On the next call the flow asks for it, and :meth:`ResumeCodes.redeem` decides:

- a code resumes only a session that is no longer on a live call and is still within its window;
- it is taken with GETDEL, so of several calls keying one code at the same moment exactly one
  resumes it;
- wrong codes are counted per source (the caller key, which for these callers is the CallSid)
  and for everyone, per minute, in sharded counters. A source past ``per_source`` wrong codes
  in a minute gets no code accepted for the rest of it; everyone's limit is the larger of
  ``floor`` and ``per_prompt`` times the calls asked for a code in the last two minutes, so it
  grows with traffic and one caller keying wrong codes cannot lock every other caller out.

The object makes decisions and counts; the conversation service turns them into turns.
"""

from __future__ import annotations

import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from context.sessions import SessionStore
from conversation.flow_versions import FlowVersions
from ivr import resume
from ivr.flow import Flow
from ivr.session import Session
from ivr.states import PlanKind, Status

CODE_DRAWS = 5
LONGEST_CALL = 4 * 3600  # Twilio ends a call after four hours


@dataclass(frozen=True)
class CodeLimits:
    """How many wrong codes a minute are tolerated."""

    per_source: int = 5
    floor: int = 30  # RESUME_CODE_FAILURES_PER_MINUTE
    per_prompt: float = 1.0
    shards: int = 8


class Refusal(StrEnum):
    """Why a keyed code resumed nothing."""

    WRONG = "wrong"  # no such code, not resumable, or another call took it first
    THROTTLED = "throttled"  # too many wrong codes this minute (this source, or everyone)


@dataclass(frozen=True)
class Redeemed:
    """A code that resumes ``previous`` (stored under ``owner``) on flow version ``flow``."""

    owner: str
    previous: Session
    flow: Flow


class ResumeCodes:
    """Issue, count and redeem resume codes."""

    def __init__(
        self,
        store: SessionStore,
        versions: FlowVersions,
        clock: Callable[[], float],
        limits: CodeLimits | None = None,
    ) -> None:
        self.store = store
        self.versions = versions
        self.clock = clock
        self.limits = limits or CodeLimits()

    def issue(self, flow: Flow, session: Session) -> str | None:
        """A new code claimed for ``session``'s caller, or ``None`` if the code space is crowded."""
        ttl = _window(flow) + LONGEST_CALL
        for _ in range(CODE_DRAWS):
            code = f"{secrets.randbelow(10**resume.CODE_LENGTH):0{resume.CODE_LENGTH}d}"
            if self.store.claim_code(code, session.caller, ttl):
                return code
        return None

    def call_ended(self, flow: Flow | None, session: Session) -> None:
        """The call that was given ``session.resume_code`` ended: the code lives one window more."""
        if session.resume_code and flow is not None:
            self.store.expire_code(session.resume_code, _window(flow))

    def give_back(self, code: str, redeemed: Redeemed) -> None:
        """Return a redeemed code to its owner (the resume it was taken for did not stand)."""
        self.store.claim_code(code, redeemed.owner, _window(redeemed.flow))

    def asked(self, source: str) -> None:
        """A call was asked for a resume code (the traffic everyone's limit grows with)."""
        self.store.count_code(source, self._minute(), self._shard(source), failed=False)

    def redeem(self, code: str, source: str) -> Redeemed | Refusal:
        """What keying ``code`` gives the call whose caller key is ``source``."""
        limits = self.limits
        minute = self._minute()
        own, everyone, prompts = self.store.code_counts(source, minute, limits.shards)
        if own >= limits.per_source or everyone >= max(limits.floor, limits.per_prompt * prompts):
            self._failed(source, minute)
            return Refusal.THROTTLED
        found = self._resumable(code, source) if resume.is_code(code) else None
        if found is None or self.store.redeem_code(code) != found.owner:
            self._failed(source, minute)
            return Refusal.WRONG
        return found

    def _resumable(self, code: str, source: str) -> Redeemed | None:
        owner = self.store.caller_by_code(code)
        if owner is None or owner == source:
            return None
        previous = self.store.load(owner).session
        if previous is None or previous.resume_code != code or previous.status == Status.ACTIVE:
            return None  # a live call's code resumes nothing: its caller is still on the line
        pinned = self.versions.for_session(previous)
        if pinned is None:
            return None
        if resume.plan(pinned, previous, self.clock()).kind not in (
            PlanKind.OFFER,
            PlanKind.CONTINUE,
        ):
            return None
        return Redeemed(owner, previous, pinned)

    def _failed(self, source: str, minute: int) -> None:
        self.store.count_code(source, minute, self._shard(source), failed=True)

    def _minute(self) -> int:
        return int(self.clock() // 60)

    def _shard(self, source: str) -> int:
        return zlib.crc32(source.encode("utf-8")) % self.limits.shards


def _window(flow: Flow) -> int:
    return max(60, int(flow.spec.resume.within))
