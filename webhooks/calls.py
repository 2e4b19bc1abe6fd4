"""The imperative shell around the engine: load the session, decide, step, run data dips, save.

One webhook is one :class:`CallService` method, and each is one *exchange*: load (one Redis round
trip), decide what the caller gets, settle data dips, render, save with a compare-and-set (one
round trip). A save that loses a race reloads and decides again, and then usually finds the reply
the winner cached. A retried webhook (same CallSid and step) gets the cached reply, so the flow
never advances twice. Resume (see :mod:`ivr.resume`) is decided when a call begins.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from channels.http import Fetcher
from context.callers import masked
from context.sessions import Loaded, SessionStore
from ivr import engine, resume
from ivr.catalog import Catalog
from ivr.errors import FlowLoadError, SessionContention, SessionCorrupt
from ivr.flow import Flow, load_flow_text
from ivr.session import ACTIVE, Session
from ivr.turn import Action, Answer, FetchResult, Note, Say, Turn
from webhooks import metrics, twiml
from webhooks.outcome import NO_FLOW, Outcome
from webhooks.params import CallParams
from webhooks.resume_codes import CODE_FAILURES_PER_MINUTE, ResumeCodes

log = logging.getLogger("omnivoice.calls")

INCOMING_STEP = -1
MAX_STEP = 2**31 - 1  # far beyond any call; keeps stored numbers within every JSON codec's range
SAVE_ATTEMPTS = 3
MAX_FETCHES = 5
TURN_BUDGET = 11.0  # seconds of data dips per webhook; Twilio gives up at 15
MIN_FETCH_SECONDS = 0.2
TERMINAL_CALL_STATUSES = {"completed", "busy", "failed", "no-answer", "canceled"}
SUPERSEDED_TEXT = "This call is continuing on another line. Goodbye."
CANNOT_RESUME_TEXT = "Sorry, we couldn't pick up where you left off, so let's start again."


class CallService(ResumeCodes):
    """Runs calls: the three Twilio-facing operations of a voice flow."""

    def __init__(
        self,
        catalog: Catalog,
        store: SessionStore,
        fetcher: Fetcher,
        answer_url: Callable[[str, int], str],
        env: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
        code_failure_limit: int = CODE_FAILURES_PER_MINUTE,
        turn_budget: float = TURN_BUDGET,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.fetcher = fetcher
        self.answer_url = answer_url
        self.env = dict(env or {})
        self.clock = clock
        self.code_failure_limit = code_failure_limit
        self.turn_budget = turn_budget
        self._published: dict[str, float] = {}

    # ---- webhooks -------------------------------------------------------------------------
    def incoming(self, params: CallParams) -> str | None:
        """A new call: start (or resume) the flow for the called number; ``None``: no flow."""

        def decide(loaded: Loaded, notes: list[Note]) -> Outcome:
            if loaded.reply and _owned(loaded.session, params):
                return Outcome(reply=loaded.reply)
            return self._begin(params, loaded, notes)

        return self._exchange(params, INCOMING_STEP, decide)

    def answer(self, params: CallParams, step: int) -> str | None:
        """The caller's answer to the gather asked at ``step``."""

        def decide(loaded: Loaded, notes: list[Note]) -> Outcome:
            session = loaded.session
            if session is None or not _owned(session, params):
                if session is None or self.store.caller_of(params.call_sid) is None:
                    notes.append(Note("unknown_call_restarted", {"step": step}))
                    return self._begin(params, loaded, notes)
                notes.append(Note("superseded_call_fenced", {"step": step}))
                return Outcome(reply=twiml.hangup(SUPERSEDED_TEXT))
            if loaded.reply:
                notes.append(Note("duplicate_webhook", {"step": step}))
                return Outcome(reply=loaded.reply)
            if session.status != ACTIVE:
                return Outcome(reply=twiml.hangup())
            flow = self._flow_for(session)
            if flow is None:
                notes.append(Note("flow_version_gone", {"version": session.flow_version}))
                return self._restart(params, session)
            if session.waiting == "resume_code":
                return self._code_answer(flow, session, params, notes)
            if session.step != step or session.waiting not in ("input", "resume"):
                return Outcome(flow=flow, turn=self._ask_again(flow, session))
            event = Answer(params.digits, params.speech, params.confidence, at=self.clock())
            return Outcome(flow=flow, turn=engine.step(flow, session, event, self.env))

        return self._exchange(params, step, decide)

    def status(self, params: CallParams) -> bool:
        """Record a call status callback; ``False`` when the call is unknown or already recorded."""
        if params.call_status not in TERMINAL_CALL_STATUSES:
            return False
        for _ in range(SAVE_ATTEMPTS):
            loaded = self._load(params.caller.key)
            session = loaded.session
            if session is None or session.call_sid != params.call_sid:
                return False
            if session.call_status in TERMINAL_CALL_STATUSES:
                return False
            ended = session.call_ended(params.call_status, self.clock())
            if self.store.save(ended, loaded.seq) is not None:
                self._note(params, "call_ended", status=ended.status, reason=ended.ended_reason)
                return True
        return False

    # ---- the exchange ---------------------------------------------------------------------
    def _exchange(
        self, params: CallParams, step: int, decide: Callable[[Loaded, list[Note]], Outcome]
    ) -> str | None:
        """Load, decide, settle, render, save; the decision's notes are logged once it stands."""
        deadline = time.monotonic() + self.turn_budget  # data dips share it, retries included
        for _ in range(SAVE_ATTEMPTS):
            loaded = self._load(params.caller.key, params.call_sid, step)
            notes: list[Note] = []
            outcome = decide(loaded, notes)
            if outcome.turn is None or outcome.flow is None:
                self._log(params, notes)
                return outcome.reply
            flow = outcome.flow
            turn = self._settle(flow, outcome.turn, deadline)
            if turn.session.step <= step:  # every answered request moves the step on
                turn = Turn(turn.session.evolve(step=step + 1), turn.actions, None, turn.notes)
            turn = self._issue_code(flow, params, turn)
            reply = self._render(turn, params.url_root)
            saved = self.store.save(
                turn.session,
                loaded.seq,
                reply,
                reply_step=step,
                index_call=step == INCOMING_STEP or loaded.session is None,
                also_set=self._publication(flow),
            )
            if saved is None:
                self._note(params, "save_conflict", step=step)
                continue
            if outcome.also_delete:  # only once this save has won
                self.store.delete(*outcome.also_delete)
            self._published.setdefault(flow.version, time.monotonic())
            self._log(params, [*notes, *turn.notes])
            return reply
        raise SessionContention(params.call_sid)

    def _begin(self, params: CallParams, loaded: Loaded, notes: list[Note]) -> Outcome:
        """The first turn of a call: fresh, or resumed by :func:`ivr.resume.plan`."""
        flow = self.catalog.for_number(params.to)
        if flow is None:
            log.error("no flow answers %s and there is no default flow", params.to)
            return NO_FLOW
        now = self.clock()
        previous = loaded.session
        if (
            previous is not None
            and previous.status == ACTIVE
            and previous.call_sid != params.call_sid
        ):
            notes.append(Note("call_superseded", {"previous_call": previous.call_sid}))
        pinned = self._flow_for(previous) if previous and previous.flow_id == flow.id else None
        plan = resume.plan(pinned or flow, previous, now, params.caller.recognised)
        notes.append(Note(f"resume_{plan.kind}", {"reason": plan.reason}))
        if plan.kind == resume.FRESH:
            return Outcome(flow=flow, turn=self._fresh(flow, params))
        if plan.kind == resume.ASK_CODE:
            return Outcome(flow=flow, turn=resume.ask_code(flow, self._fresh(flow, params).session))
        if pinned is None or previous is None:
            notes.append(Note("flow_version_gone"))
            return Outcome(flow=flow, turn=self._fresh(flow, params, CANNOT_RESUME_TEXT))
        carried = resume.carried_over(pinned, previous, params.call_sid, now, params.attested)
        if plan.kind == resume.OFFER:
            return Outcome(flow=pinned, turn=resume.offer(pinned, carried, self.env))
        if plan.kind == resume.TRANSFERRED_ROUTE:
            return Outcome(
                flow=pinned, turn=resume.transferred_route(pinned, carried, now, self.env)
            )
        return Outcome(flow=pinned, turn=resume.restore(pinned, carried, now, self.env))

    def _fresh(self, flow: Flow, params: CallParams, apology: str | None = None) -> Turn:
        lead = (Say(apology, flow.spec.voice, flow.spec.language),) if apology else ()
        turn = engine.start(
            flow, caller=params.caller.key, call_sid=params.call_sid, at=self.clock(),
            env=self.env, lead=lead,
        )  # fmt: skip
        session = turn.session.evolve(attested=params.attested)
        return Turn(session, turn.actions, turn.fetch, turn.notes)

    def _restart(self, params: CallParams, session: Session) -> Outcome:
        """The session's flow version cannot be served: apologise and start the current flow."""
        flow = self.catalog.for_number(params.to) or self.catalog.get(session.flow_id)
        if flow is None:
            return NO_FLOW
        return Outcome(flow=flow, turn=self._fresh(flow, params, CANNOT_RESUME_TEXT))

    def _ask_again(self, flow: Flow, session: Session) -> Turn:
        """A request for a step that is not the current one: ask the current question again."""
        if session.waiting == "resume":
            return resume.offer(flow, session, self.env)
        return engine.start(
            flow, caller=session.caller, call_sid=session.call_sid, at=self.clock(),
            env=self.env, node=session.node, session=session,
        )  # fmt: skip

    # ---- pieces ---------------------------------------------------------------------------
    def _load(self, caller: str, call_sid: str | None = None, step: int | None = None) -> Loaded:
        try:
            return self.store.load(caller, call_sid, step)
        except SessionCorrupt as exc:
            log.error("discarding corrupt session of %s: %s", masked(caller), exc.reason)
            self.store.discard(caller)
            return Loaded(None, 0)

    def _flow_for(self, session: Session) -> Flow | None:
        """The flow version a session runs on: in memory, else published in Redis."""
        flow = self.catalog.version(session.flow_version)
        if flow is not None:
            return flow
        source = self.store.flow_source(session.flow_version)
        if source is None:
            return None
        try:
            flow = load_flow_text(
                source, f"{session.flow_id}@{session.flow_version}", session.flow_id
            )
        except FlowLoadError as exc:
            log.error("stored flow version %s no longer loads: %s", session.flow_version, exc)
            return None
        if flow.version != session.flow_version:
            return None
        self.catalog.remember(flow)
        return flow

    def _publication(self, flow: Flow) -> Sequence[tuple[str, str, int]]:
        """Publish a flow version's text to Redis (once per half TTL) so restarts keep it."""
        published = self._published.get(flow.version)
        if published is not None and time.monotonic() - published < self.store.ttl / 2:
            return ()
        self._published.pop(flow.version, None)
        return ((self.store.keys.flow_version(flow.version), flow.source, self.store.ttl * 2),)

    def _settle(self, flow: Flow, turn: Turn, deadline: float) -> Turn:
        """Run the data dips a turn asks for, feeding results back, until the turn is final.

        The dips share the webhook's time budget: each gets at most what is left of it, so a
        chain of slow back-ends ends in ``on_error`` before Twilio's 15 s limit, not in
        Twilio's own error message.
        """
        actions: list[Action] = list(turn.actions)
        notes = list(turn.notes)
        for count in range(MAX_FETCHES + 1):
            if turn.fetch is None:
                break
            left = deadline - time.monotonic()
            if count == MAX_FETCHES:
                result = FetchResult(
                    ok=False, error="too many data dips in one turn", at=self.clock()
                )
            elif left < MIN_FETCH_SECONDS:
                result = FetchResult(
                    ok=False, error="no time left in this webhook", at=self.clock()
                )
            else:
                request = turn.fetch
                if request.timeout > left:
                    request = replace(request, timeout=left)
                result = self.fetcher.fetch(request)
            turn = engine.step(flow, turn.session, result, self.env)
            actions.extend(turn.actions)
            notes.extend(turn.notes)
        return Turn(turn.session, tuple(actions), None, tuple(notes))

    def _render(self, turn: Turn, url_root: str) -> str:
        return twiml.render(turn.actions, self.answer_url(url_root, turn.session.step))

    def _log(self, params: CallParams, notes: list[Note]) -> None:
        for note in notes:
            self._note(params, note.name, **note.data)

    def _note(self, params: CallParams, name: str, **data: Any) -> None:
        metrics.observe_note(name, data)
        log.info(
            name,
            extra={"call_sid": params.call_sid, "caller": masked(params.caller.key), "data": data},
        )


def _owned(session: Session | None, params: CallParams) -> bool:
    return session is not None and session.call_sid == params.call_sid
