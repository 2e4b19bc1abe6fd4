"""Resume codes: how a caller without caller ID picks up where they left off.

Such a caller is keyed by CallSid, so the next call cannot find them by number. At their first
question they hear a six-digit code (claimed with SET NX, so no two callers share one); on the
next call the flow asks for it. A code resumes only a session that is no longer on a live call,
three wrong tries start afresh, and wrong codes from all callers are counted per minute: past
the limit no code is accepted until the minute is over. This is a mixin of
:class:`webhooks.calls.CallService`, which supplies the store, clock and fresh starts.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from context.sessions import Loaded, SessionStore
from ivr import resume
from ivr.flow import Flow
from ivr.session import ACTIVE, Session
from ivr.turn import Gather, Note, Turn
from webhooks.outcome import Outcome
from webhooks.params import CallParams

CODE_DRAWS = 5
CODE_FAILURES_PER_MINUTE = 30


class ResumeCodes:
    """Issue and redeem resume codes (mixed into the call service)."""

    store: SessionStore
    env: dict[str, Any]
    clock: Callable[[], float]
    code_failure_limit: int

    def _fresh(self, flow: Flow, params: CallParams, apology: str | None = None) -> Turn:
        raise NotImplementedError

    def _load(self, caller: str, call_sid: str | None = None, step: int | None = None) -> Loaded:
        raise NotImplementedError

    def _flow_for(self, session: Session) -> Flow | None:
        raise NotImplementedError

    def _code_answer(
        self, flow: Flow, session: Session, params: CallParams, notes: list[Note]
    ) -> Outcome:
        code = (params.digits or "").rstrip("#")
        if not code:
            notes.append(Note("resume_code_skipped"))
            return Outcome(flow=flow, turn=self._fresh(flow, params))
        now = self.clock()
        if resume.is_code(code):
            if self.store.code_failures(now) >= self.code_failure_limit:
                # Someone may be guessing codes: accept none until the minute is over.
                notes.append(Note("resume_codes_throttled"))
            elif (found := self._resume_by_code(code, session, params)) is not None:
                return found
        self.store.code_failures(now, add=1)
        attempts = session.no_match_count + 1
        notes.append(Note("resume_code_wrong", {"attempt": attempts}))
        if attempts >= resume.CODE_ATTEMPTS:
            notes.append(Note("resume_code_failed"))
            return Outcome(flow=flow, turn=self._fresh(flow, params, resume.CODE_RETRY))
        retry = session.evolve(no_match_count=attempts, step=session.step + 1)
        return Outcome(flow=flow, turn=resume.ask_code(flow, retry, retry=True))

    def _resume_by_code(self, code: str, session: Session, params: CallParams) -> Outcome | None:
        owner = self.store.caller_by_code(code)
        if owner is None or owner == session.caller:
            return None
        previous = self._load(owner).session
        if previous is None or previous.resume_code != code or previous.status == ACTIVE:
            return None  # a live call's code resumes nothing: its caller is still on the line
        pinned = self._flow_for(previous)
        if pinned is None:
            return None
        now = self.clock()
        if resume.plan(pinned, previous, now).kind not in (resume.OFFER, resume.CONTINUE):
            return None
        moved = resume.carried_over(pinned, previous, params.call_sid, now, params.attested).evolve(
            caller=session.caller, resume_code=None, step=session.step + 1
        )
        turn = resume.restore(pinned, moved, now, self.env)
        gone = (self.store.keys.session(owner), self.store.keys.resume_code(code))
        return Outcome(flow=pinned, turn=turn, also_delete=gone)

    def _issue_code(self, flow: Flow, params: CallParams, turn: Turn) -> Turn:
        """Give a caller without caller ID a resume code at their first checkpoint, once.

        The code is claimed with SET NX before it is spoken, so it never points at two callers.
        """
        session = turn.session
        if (
            params.caller.recognised
            or not flow.spec.resume.codes
            or session.status != ACTIVE
            or session.waiting != "input"
            or session.resume_code
        ):
            return turn
        for _ in range(CODE_DRAWS):
            code = f"{secrets.randbelow(10**resume.CODE_LENGTH):0{resume.CODE_LENGTH}d}"
            if self.store.claim_code(code, session.caller):
                break
        else:
            return turn  # the code space is crowded; this caller simply gets no code
        at = next(i for i, a in enumerate(turn.actions) if isinstance(a, Gather))
        issued = Turn(
            session.evolve(resume_code=code),
            (*turn.actions[:at], resume.announce_code(flow, code), *turn.actions[at:]),
            None,
            (*turn.notes, Note("resume_code_issued")),
        )
        return issued
