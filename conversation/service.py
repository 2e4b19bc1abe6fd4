"""The conversation service: load the session, decide, step, settle effects, save, emit events.

Each request of a channel is one *exchange*: load (one Redis round trip), decide what the caller
gets, settle the turn's effects (data dips run here, within the request's time budget), render
with the channel's renderer, save with a compare-and-set (one round trip; the turn's events ride
in it), then hand the events to the sinks. A save that loses a race reloads and decides again,
and then usually finds the reply the winner cached. A retried request (same contact id and step)
gets the cached reply, so the flow never advances twice; copies arriving at once run a
side-effecting data dip only once (:mod:`conversation.dip_claims`): the copy that claimed the
step runs it, the others wait for its reply. Resume (:mod:`ivr.resume`) is decided
when a conversation begins, including whether a call from the number of a live call starts
beside it (the live call's session moves aside in the same save) or takes it over; resume
codes are :class:`~conversation.resume_codes.ResumeCodes`. A save that reaches Redis after the
request gave up on it is refused there, so a caller who heard the fallback was never advanced.

Voice is the first channel: :meth:`incoming`, :meth:`answer` and :meth:`status` are what Twilio's
voice webhooks call, with a call's CallSid as the contact id.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from math import ceil
from typing import Any, Protocol

from context.callers import masked
from context.outbound_tokens import Grant
from context.sessions import Loaded, Saved, SessionStore
from conversation import text_turns
from conversation.dip_claims import StepClaimed, StepDips
from conversation.events import (
    ConversationEvent,
    EventSink,
    LogSink,
    emit_all,
    from_effects,
)
from conversation.first_turns import FirstTurns
from conversation.flow_versions import FlowVersions
from conversation.inbound import Inbound
from conversation.outbound import outbound_conversation, outbound_event
from conversation.resume_codes import Redeemed, Refusal, ResumeCodes
from data_dips.http import Fetcher
from ivr import engine, handoff, languages, liveness, resume, steps
from ivr.catalog import Catalog
from ivr.errors import SessionContention, SessionCorrupt, StoreUnavailable
from ivr.flow import Flow
from ivr.session import Session
from ivr.states import (
    ConcurrentCalls,
    EventName,
    PlanKind,
    Status,
    TransferResult,
    Waiting,
    start_event,
)
from ivr.turn import (
    Action,
    Answer,
    Effect,
    FetchResult,
    Gather,
    Hangup,
    HttpRequest,
    Note,
    Recorded,
    Say,
    Turn,
)

log = logging.getLogger("omnivoice.calls")

INCOMING_STEP = -1
MAX_STEP = 2**31 - 1  # far beyond any call; keeps stored numbers within every JSON codec's range
SAVE_ATTEMPTS = 3
MAX_FETCHES = 5
TURN_BUDGET = 11.0  # seconds of data dips per request; Twilio gives up at 15
CLAIM_MARGIN = 5.0  # a dip claim outlives its holder's budget by this much (its save, say)
MIN_FETCH_SECONDS = 0.2
CLAIM_WAIT_MARGIN = 1.0  # seconds of the budget a request waiting on a claimed step keeps to answer
CLAIM_POLL_SECONDS = (0.02, 0.25)  # first and longest pause between looks for the holder's reply
TERMINAL_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
SUPERSEDED_TEXT = "This call is continuing on another line. Goodbye."
CANNOT_RESUME_TEXT = "Sorry, we couldn't pick up where you left off, so let's start again."
_APOLOGIES: dict[languages.MessageName, str] = {
    "cannot_resume": CANNOT_RESUME_TEXT,
    "resume_code_retry": resume.CODE_RETRY,
}  # a flow may reword them in its messages: block


class Renderer(Protocol):
    """Turns a turn's channel-neutral actions into what the channel sends (TwiML, text, HTML)."""

    def render(self, actions: tuple[Action, ...], url_root: str, step: int) -> str:
        """The reply for ``actions``; answers come back naming ``step``."""


@dataclass(frozen=True)
class Outcome:
    """What one exchange decided: a ready reply, or a turn to settle, render and save."""

    reply: str | None = None
    flow: Flow | None = None
    turn: Turn | None = None
    also_delete: tuple[str, ...] = ()
    redeemed: tuple[str, Redeemed] | None = None  # a resume code taken by this decision
    set_aside: str | None = None  # a live call whose session moves aside for this one
    own: bool = False  # start this call's own session (its old one was taken over)
    park: str | None = None  # the flow whose session moves aside while this call is in another


NO_FLOW = Outcome()


Amendment = Callable[[Session, float], "tuple[Session, Sequence[Effect]] | None"]
"""A change to a session outside a turn (see :meth:`ConversationService.amend`)."""


class ConversationService:
    """Runs conversations; voice calls are its first channel."""

    def __init__(
        self,
        catalog: Catalog,
        store: SessionStore,
        fetcher: Fetcher,
        renderer: Renderer,
        env: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
        versions: FlowVersions | None = None,
        codes: ResumeCodes | None = None,
        sinks: Sequence[EventSink] = (LogSink(),),
        turn_budget: float = TURN_BUDGET,
        new_conversation: Callable[[], str] = lambda: secrets.token_hex(16),
        first_turns: FirstTurns | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.fetcher = fetcher
        self.renderer = renderer
        self.env = dict(env or {})
        self.clock = clock
        self.versions = versions or FlowVersions(catalog, store)
        self.codes = codes or ResumeCodes(store, self.versions, clock)
        self.sinks = tuple(sinks)
        self.turn_budget = turn_budget
        self.new_conversation = new_conversation
        self.first_turns = first_turns or FirstTurns()

    # ---- voice ----------------------------------------------------------------------------
    def incoming(self, params: Inbound) -> str | None:
        """A new call: start (or resume) the flow for the called number; ``None``: no flow."""

        def decide(loaded: Loaded, notes: list[Note]) -> Outcome:
            if loaded.reply and _owned(loaded.session, params):
                return Outcome(reply=loaded.reply)
            return self._begin(params, loaded, notes)

        # A caller without caller ID may be asked for a resume code: no turn is tried ahead.
        return self._exchange(params, INCOMING_STEP, decide, ahead=params.caller.recognised)

    def answer(self, params: Inbound, step: int) -> str | None:
        """The caller's answer to what was asked at ``step``."""

        def decide(loaded: Loaded, notes: list[Note]) -> Outcome:
            session = loaded.session
            if session is None or not _owned(session, params):
                if session is None or not loaded.call_known:
                    notes.append(Note(EventName.UNKNOWN_CALL_RESTARTED, {"step": step}))
                    return self._begin(params, loaded, notes)
                notes.append(Note(EventName.SUPERSEDED_CALL_FENCED, {"step": step}))
                return self._fenced(params, notes)
            flow = self._standing(params, loaded, session, notes, step)
            if isinstance(flow, Outcome):
                return flow
            if session.waiting == Waiting.RESUME_CODE:
                return self._code_answer(flow, session, params, notes)
            if session.step != step or not steps.answerable(session):
                return Outcome(flow=flow, turn=self._ask_again(flow, session))
            event = Answer(params.digits, params.speech, params.confidence, at=self.clock())
            return Outcome(flow=flow, turn=steps.advance(flow, session, event, self.env))

        return self._exchange(params, step, decide)

    def outbound(self, params: Inbound, grant: Grant) -> str | None:
        """A call we placed was answered (by a person or a machine): run the grant's flow."""

        def decide(loaded: Loaded, notes: list[Note]) -> Outcome:
            if loaded.reply and _owned(loaded.session, params):
                return Outcome(reply=loaded.reply)
            flow = self.catalog.get(grant.flow)
            if flow is None:
                log.error("outbound call for flow %r, which is gone", grant.flow)
                return NO_FLOW
            now = self.clock()
            answered_by = params.answered_by or "unknown"
            notes.append(
                Note(
                    EventName.OUTBOUND_ANSWERED,
                    {"answered_by": answered_by, "purpose": grant.purpose, "direction": "outbound"},
                )
            )
            variables = {**grant.variables, "answered_by": answered_by, "purpose": grant.purpose}
            turn = engine.start(
                flow, caller=params.caller.key, call_sid=params.contact_id, at=now, env=self.env,
                card=loaded.card, variables=variables,
            )  # fmt: skip
            session = turn.session.evolve(conversation=outbound_conversation(params.contact_id))
            previous = loaded.session
            live = (
                previous is not None
                and previous.call_sid != params.contact_id
                and (liveness.is_live(previous, now) or _in_transfer(previous))
            )  # the customer is on another call with us (or waits for an agent): it keeps its session
            return Outcome(
                flow=flow,
                turn=turn.evolve(session=session),
                set_aside=previous.call_sid if live and previous is not None else None,
            )

        return self._exchange(params, INCOMING_STEP, decide)

    def transfer_result(self, params: Inbound, step: int, result: TransferResult) -> str | None:
        """How the transfer made at ``step`` ended: the flow goes on from the transfer's node
        for it, or the call is done (a person took it, or the caller hung up)."""

        def decide(loaded: Loaded, notes: list[Note]) -> Outcome:
            session = loaded.session
            # A retried result finds the reply the first one cached, and the session one step on
            # (the reply cached under this step may be a gather's answer instead: not ours). If
            # that reply handed the caller over again (the flow's node for this outcome is
            # another transfer), it is still ours when this step made a handoff.
            if (
                loaded.reply
                and session is not None
                and _owned(session, params)
                and session.step == step + 1
                and (session.status != Status.TRANSFERRED or _handed_over_at(session, step))
            ):
                notes.append(Note(EventName.DUPLICATE_WEBHOOK, {"step": step}))
                return Outcome(reply=loaded.reply)
            if (
                session is None
                or not _owned(session, params)
                or session.status != Status.TRANSFERRED
                or session.step != step
            ):
                # Not this call's transfer (any more): nothing to route; connected or gone.
                return (
                    self._say_goodbye(params)
                    if result == TransferResult.CONNECTED
                    else (Outcome(reply=self.renderer.render((), params.url_root, INCOMING_STEP)))
                )
            if result == TransferResult.REDIRECTED:
                # Take call moved the caller to a <Dial> of the agent whose action names this
                # same step: the transfer is not over, so nothing moves until that Dial ends.
                handoff_id = session.handoffs[-1] if session.handoffs else None
                notes.append(
                    Note(EventName.TRANSFER_RESULT, {"result": result, "handoff_id": handoff_id})
                )
                return Outcome(reply=self.renderer.render((), params.url_root, INCOMING_STEP))
            flow = self.versions.for_session(session)
            if flow is None:
                notes.append(Note(EventName.FLOW_VERSION_GONE, {"version": session.flow_version}))
                return self._restart(params, session)
            return Outcome(
                flow=flow, turn=engine.after_transfer(flow, session, result, self.clock(), self.env)
            )

        return self._exchange(params, step, decide)

    def recorded(self, params: Inbound, step: int, recording: Recorded) -> str | None:
        """The message a record node asked for at ``step`` (or none): the flow goes on."""

        def decide(loaded: Loaded, notes: list[Note]) -> Outcome:
            session = loaded.session
            if session is None or not _owned(session, params):
                return Outcome(reply=self.renderer.render((), params.url_root, INCOMING_STEP))
            flow = self._standing(params, loaded, session, notes, step)
            if isinstance(flow, Outcome):
                return flow
            if session.step != step or session.waiting != Waiting.RECORDING:
                # Not the recording this session waits for: nothing moves.
                return Outcome(reply=self.renderer.render((), params.url_root, INCOMING_STEP))
            message = replace(recording, at=self.clock())
            turn = engine.after_recording(flow, session, message, self.env)
            return Outcome(flow=flow, turn=turn)

        return self._exchange(params, step, decide)

    def recording_status(self, params: Inbound, node: str, update: Mapping[str, Any]) -> bool:
        """Twilio's later word on a record node's recording (its status, a transcription):
        kept on the session and recorded as a ``recording`` event; ``False`` if the call is
        unknown or nothing was said."""
        if not update:
            return False
        for _ in range(SAVE_ATTEMPTS):
            loaded = self._load(params.caller.key, params.contact_id)
            session = loaded.session
            if session is None or session.call_sid != params.contact_id:
                return False
            now = self.clock()
            changed, note = engine.recording_update(session, node, update, now)
            saved, _ = self._save_callback(loaded, changed, note, now)
            if saved is not None:
                return True
        return False

    def status(self, params: Inbound) -> bool:
        """Record a call status callback; ``False`` when the call is unknown or already recorded."""
        if params.status not in TERMINAL_CALL_STATUSES:
            return False
        for _ in range(SAVE_ATTEMPTS):
            loaded = self._load(params.caller.key, params.contact_id)
            session = loaded.session
            if session is None or session.call_sid != params.contact_id:
                if params.outbound and params.status != "completed":
                    self._unanswered(params)  # a call we placed that nobody picked up
                return False
            if session.call_status in TERMINAL_CALL_STATUSES:
                return False
            now = self.clock()
            ended = session.call_ended(params.status, now)
            note = Note(
                EventName.CALL_ENDED,
                {
                    "status": ended.status,
                    "reason": ended.ended_reason,
                    "call_status": params.status,
                },
            )
            saved, flow = self._save_callback(loaded, ended, note, now)
            if saved is not None:
                self.codes.call_ended(flow, ended)
                return True
        return False

    def amend(
        self,
        caller: str,
        change: Amendment,
        call_sid: str | None = None,
        channel: str = "voice",
        flow: str | None = None,
    ) -> Session | None:
        """Change a caller's session outside a turn and save it with the change's events.

        For what arrives beside a call (a message's delivery status, a page opened or
        submitted, an inbound text): ``change`` gets the session as loaded (the one set aside
        for ``call_sid``, when that call's session was moved aside) and the time, and returns
        the changed session with its effects (notes; a message to send, recorded for the
        job queue; a callback request), or ``None`` to change nothing. A save that loses
        its race is tried again on a fresh load, with ``change`` called again. Returns the
        saved session, or ``None`` when there is none or nothing changed. With ``flow``, the
        change is for the caller's session in that flow: when the caller has since called
        another flow's number, the session kept aside for ``flow`` is the one changed.

        Raises:
            StoreUnavailable: Redis does not answer.
        """
        for _ in range(SAVE_ATTEMPTS):
            loaded = self._load(caller, call_sid)
            parked = False
            if flow is not None and (loaded.session is None or loaded.session.flow_id != flow):
                if loaded.own:  # a live call's own session is the one it is about
                    return None
                loaded, parked = self.store.load_parked(caller, flow), True
            if loaded.session is None:
                return None
            now = self.clock()
            changed = change(loaded.session, now)
            if changed is None:
                return None
            session, effects = changed
            saved, _ = self._save_callback(loaded, session, effects, now, channel, parked)
            if saved is not None:
                return session
        return None

    def text(
        self,
        params: Inbound,
        node: str,
        renderer: Renderer,
        data: Mapping[str, Any],
        flow: str | None = None,
    ) -> str | None:
        """A caller's text that the flow's ``sms.replies`` takes to ``node``: the session (in
        ``flow``) runs from it on the SMS channel and the reply is what it says (``None``: no
        session, or no such node); see :mod:`conversation.text_turns`."""
        return text_turns.run(self, params, node, renderer, data, flow)

    def _save_callback(
        self,
        loaded: Loaded,
        session: Session,
        effects: Effect | Sequence[Effect],
        now: float,
        channel: str = "voice",
        parked: bool = False,
    ) -> tuple[Saved | None, Flow | None]:
        """Save what a callback changed (no reply to cache) with its effects' events, which reach
        the sinks once the save stood; the save (``None``: another won) and the session's flow."""
        flow = self.versions.for_session(session)
        done = tuple(effects) if isinstance(effects, list | tuple) else (effects,)
        events = from_effects(done, session, flow, now, channel, self.store.codec.sealer)
        try:
            saved = self.store.save(
                session,
                loaded.seq,
                events=[e.to_dict() for e in events],
                flow=self.versions.pin(flow) if flow is not None else None,
                own=loaded.own,
                clock=loaded.clock,
                parked=parked,
            )
        except StoreUnavailable:
            self.versions.store_failed()  # as in an exchange: versions may need publishing
            raise
        if saved is not None:
            if saved.published and flow is not None:
                self.versions.published(flow)
            emit_all(self.sinks, events)
        return saved, flow

    # ---- the exchange ---------------------------------------------------------------------
    def _exchange(
        self,
        params: Inbound,
        step: int,
        decide: Callable[[Loaded, list[Note]], Outcome],
        ahead: bool = False,
    ) -> str | None:
        """Load, decide, settle, render, save; the events reach the sinks once the save stands.

        ``ahead``: the turn a load finding nothing would lead to may be tried first, in one
        round trip (:meth:`_ahead`).
        """
        deadline = time.monotonic() + self.turn_budget  # data dips share it, retries included
        dips = StepDips(
            self.store, self.fetcher, params.caller.key, params.contact_id, step,
            claim_ttl=ceil(self.turn_budget + CLAIM_MARGIN),
        )  # fmt: skip
        try:
            found = self._ahead(params, step, decide) if ahead else None
            if isinstance(found, str):
                return found
            for _ in range(SAVE_ATTEMPTS):
                loaded = found or self._load(params.caller.key, params.contact_id, step)
                found = None
                if loaded.card and loaded.session is not None:  # what the flow may know
                    loaded = replace(loaded, session=loaded.session.evolve(card=loaded.card))
                notes: list[Note] = []
                outcome = decide(loaded, notes)
                if outcome.turn is None or outcome.flow is None:
                    self._emit_unsaved(params, loaded.session, notes)
                    return outcome.reply
                flow = outcome.flow
                try:
                    turn = self._settle(flow, outcome.turn, deadline, dips)
                except StepClaimed:
                    if self._holder_replied(params, step, deadline):
                        continue  # the next load finds the holder's reply: a duplicate's answer
                    dips.yielded = True  # the holder went quiet: its side effects stay its own
                    turn = self._settle(flow, outcome.turn, deadline, dips)
                session, reply, events = self._finished(flow, params, step, notes, turn)
                own = loaded.own or outcome.own
                saved = self.store.save(
                    session,
                    loaded.seq if own == loaded.own else 0,  # a new own session: none yet
                    reply,
                    reply_step=step,
                    mark_call=step == INCOMING_STEP or loaded.session is None,
                    events=[event.to_dict() for event in events],
                    flow=self.versions.pin(flow),
                    own=own,
                    set_aside=outcome.set_aside,
                    clock=loaded.clock,
                    park=outcome.park,
                )
                if saved is None:
                    if outcome.redeemed is not None:  # the code is free again for the retry
                        self.codes.give_back(*outcome.redeemed)
                    self._emit_unsaved(
                        params, loaded.session, [Note(EventName.SAVE_CONFLICT, {"step": step})]
                    )
                    continue
                if outcome.also_delete:  # only once this save has won
                    self.store.delete(*outcome.also_delete)
                if saved.published:
                    self.versions.published(flow)
                emit_all(self.sinks, events)
                return reply
        except StoreUnavailable:
            self.versions.store_failed()  # it may come back empty: publish versions again
            raise
        raise SessionContention(params.contact_id)

    def _finished(
        self, flow: Flow, params: Inbound, step: int, notes: list[Note], turn: Turn
    ) -> tuple[Session, str, list[ConversationEvent]]:
        """A settled turn's session to save, its reply and its events."""
        if turn.session.step <= step:  # every answered request moves the step on
            turn = turn.evolve(session=turn.session.evolve(step=step + 1))
        turn = self._issue_code(flow, params, turn)
        now = self.clock()
        session = turn.session.evolve(live_until=liveness.live_until(turn.actions, now))
        reply = self.renderer.render(turn.actions, params.url_root, session.step)
        events = from_effects(
            (*notes, *turn.effects), session, flow, now, sealer=self.store.codec.sealer
        )
        return session, reply, events

    def _ahead(
        self, params: Inbound, step: int, decide: Callable[[Loaded, list[Note]], Outcome]
    ) -> str | Loaded | None:
        """The first turn of a call from a caller Redis knows nothing about, worked out before
        any load and saved in one round trip (:meth:`SessionStore.start`), when
        :attr:`first_turns` says tries stand often enough (see :mod:`conversation.first_turns`).

        The reply when it stood; what the load would have found when something was stored
        (the caller is known: the usual way goes on from there, with no load of its own);
        ``None`` when nothing was tried, or the try came to nothing (the usual way, from its
        load). Only a turn with no side effects before its save is tried: one without data
        dips, resume codes or other sessions to move; its events reach the sinks only once it
        stood, as always.
        """
        clock = self.store.clock
        if clock is None or not self.first_turns.worth_trying(clock.age()):
            return None
        notes: list[Note] = []
        outcome = decide(Loaded(None, 0, clock=clock), notes)
        flow, turn = outcome.flow, outcome.turn
        if (
            flow is None
            or turn is None
            or turn.fetch is not None
            or outcome.also_delete
            or outcome.redeemed is not None
            or outcome.set_aside is not None
            or outcome.own
            or outcome.park is not None
        ):
            return None
        session, reply, events = self._finished(flow, params, step, notes, turn)
        try:
            result = self.store.start(
                session, reply, step, [event.to_dict() for event in events],
                self.versions.pin(flow), clock,
            )  # fmt: skip
        except SessionCorrupt as exc:
            self._discard(params.caller.key, params.contact_id, exc)
            return None
        self.first_turns.record(isinstance(result, Saved))
        if not isinstance(result, Saved):
            return result
        if result.published:
            self.versions.published(flow)
        emit_all(self.sinks, events)
        return reply

    def _standing(
        self, params: Inbound, loaded: Loaded, session: Session, notes: list[Note], step: int
    ) -> Outcome | Flow:
        """What a webhook of the session's own call meets before its flow steps: the reply
        already sent (a retried request), a goodbye (the session ended), a fresh start (its flow
        version is gone); else the session's flow."""
        if loaded.reply:
            notes.append(Note(EventName.DUPLICATE_WEBHOOK, {"step": step}))
            return Outcome(reply=loaded.reply)
        if session.status != Status.ACTIVE:
            return self._say_goodbye(params)
        flow = self.versions.for_session(session)
        if flow is None:
            notes.append(Note(EventName.FLOW_VERSION_GONE, {"version": session.flow_version}))
            return self._restart(params, session)
        return flow

    def _begin(self, params: Inbound, loaded: Loaded, notes: list[Note]) -> Outcome:
        """The first turn of a call: fresh, or resumed by :func:`ivr.resume.plan`.

        A caller of the number still waiting in a transfer keeps their session (set aside for
        their call): the transfer's result comes back to the flow, and must find it.
        """
        outcome = self._first_turn(params, loaded, notes)
        previous = loaded.session
        if (
            outcome.set_aside is None
            and previous is not None
            and previous.call_sid != params.contact_id
            and _in_transfer(previous)
        ):
            return replace(outcome, set_aside=previous.call_sid)
        return outcome

    def _first_turn(self, params: Inbound, loaded: Loaded, notes: list[Note]) -> Outcome:
        """The first turn of a call as :func:`ivr.resume.plan` has it.

        One session per caller per flow: a call to another flow's number moves the caller's
        session in the first flow aside (to its own key, :meth:`SessionStore.load_parked`) and
        picks up what the caller had left in this flow, if anything, so each resumes within its
        own window. A live call or one waiting in a transfer is set aside as before instead.
        """
        flow = self.catalog.for_number(params.to)
        if flow is None:
            log.error("no flow answers %s and there is no default flow", params.to)
            return NO_FLOW
        previous = loaded.session
        if (
            previous is None
            or previous.flow_id == flow.id
            or previous.call_sid == params.contact_id
            or liveness.is_live(previous, self.clock())
            or _in_transfer(previous)
        ):
            return self._planned(flow, params, loaded, notes)
        parked = self.store.load_parked(params.caller.key, flow.id).session
        outcome = self._planned(flow, params, replace(loaded, session=parked), notes)
        if outcome.turn is None:
            return outcome
        taken = (self.store.keys.flow_session(params.caller.key, flow.id),) if parked else ()
        return replace(outcome, park=previous.flow_id, also_delete=(*outcome.also_delete, *taken))

    def _planned(self, flow: Flow, params: Inbound, loaded: Loaded, notes: list[Note]) -> Outcome:
        """The first turn in ``flow`` after ``loaded.session`` (this flow's, if any)."""
        now = self.clock()
        previous = loaded.session
        pinned = (
            self.versions.for_session(previous)
            if previous and previous.flow_id == flow.id
            else None
        )
        plan = resume.plan(
            pinned or flow, previous, now, params.caller.recognised, params.contact_id
        )
        if plan.kind == PlanKind.SEPARATE and previous is not None:
            notes.append(Note(start_event(plan.kind), {"reason": plan.reason}))
            return Outcome(
                flow=flow,
                turn=self._fresh(flow, params, card=loaded.card),
                set_aside=previous.call_sid,
            )
        if (
            previous is not None
            and previous.status == Status.ACTIVE
            and previous.call_sid != params.contact_id
        ):
            notes.append(Note(EventName.CALL_SUPERSEDED, {"previous_call": previous.call_sid}))
        notes.append(Note(start_event(plan.kind), {"reason": plan.reason}))
        if plan.kind == PlanKind.FRESH:
            return Outcome(flow=flow, turn=self._fresh(flow, params, card=loaded.card))
        if plan.kind == PlanKind.ASK_CODE:
            self.codes.asked(params.caller.key)
            return Outcome(
                flow=flow,
                turn=resume.ask_code(flow, self._fresh(flow, params, card=loaded.card).session),
            )
        if pinned is None or previous is None:
            notes.append(Note(EventName.FLOW_VERSION_GONE))
            return Outcome(flow=flow, turn=self._fresh(flow, params, "cannot_resume", loaded.card))
        carried = resume.carried_over(pinned, previous, params.contact_id, now, params.attested)
        if plan.kind == PlanKind.OFFER:
            return Outcome(flow=pinned, turn=resume.offer(pinned, carried, self.env))
        if plan.kind == PlanKind.TRANSFERRED:
            return Outcome(
                flow=pinned, turn=resume.transferred_route(pinned, carried, now, self.env)
            )
        return Outcome(flow=pinned, turn=resume.restore(pinned, carried, now, self.env))

    def _fresh(
        self,
        flow: Flow,
        params: Inbound,
        apology: languages.MessageName | None = None,
        card: Mapping[str, Any] | None = None,
    ) -> Turn:
        lead: tuple[Action, ...] = ()
        if apology is not None:
            voice, language = languages.speaking(flow, {})
            text = languages.message(flow, apology, _APOLOGIES[apology], language)
            lead = (Say(text, voice, language),)
        known = ("caller_id", "stir_a") if params.attested else ("caller_id",)
        turn = engine.start(
            flow, caller=params.caller.key, call_sid=params.contact_id, at=self.clock(),
            env=self.env, lead=lead, card=card,
            identified=known if params.caller.recognised else (),
            conversation=self.new_conversation(),
        )  # fmt: skip
        return turn.evolve(session=turn.session.evolve(attested=params.attested))

    def _restart(self, params: Inbound, session: Session) -> Outcome:
        """The session's flow version cannot be served: apologise and start the current flow."""
        flow = self.catalog.for_number(params.to) or self.catalog.get(session.flow_id)
        if flow is None:
            return NO_FLOW
        return Outcome(flow=flow, turn=self._fresh(flow, params, "cannot_resume", session.card))

    def _ask_again(self, flow: Flow, session: Session) -> Turn:
        """A request for a step that is not the current one: ask the current question again."""
        if session.waiting == Waiting.RESUME_OFFER:
            return resume.offer(flow, session, self.env)
        return engine.start(
            flow, caller=session.caller, call_sid=session.call_sid, at=self.clock(),
            env=self.env, node=session.node, session=session,
        )  # fmt: skip

    def _fenced(self, params: Inbound, notes: list[Note]) -> Outcome:
        """A webhook of a call whose session a newer call from the number took over.

        Under ``concurrent: takeover`` that is the point: the older call hears goodbye. Otherwise
        the session was taken because this call looked gone (silent past its next webhook's due
        time), yet it is still on the line: it is not cut off, but starts again, with a short
        apology, in a session of its own.
        """
        flow = self.catalog.for_number(params.to)
        if flow is None:
            return self._say_goodbye(params, SUPERSEDED_TEXT)
        if flow.spec.resume.concurrent == ConcurrentCalls.TAKEOVER:
            voice, language = languages.speaking(flow, {})
            text = languages.message(flow, "superseded", SUPERSEDED_TEXT, language)
            return self._say_goodbye(params, text, voice, language)
        notes.append(Note(EventName.RESUME_FRESH, {"reason": "its session was taken over"}))
        return Outcome(flow=flow, turn=self._fresh(flow, params, "cannot_resume"), own=True)

    def _say_goodbye(
        self,
        params: Inbound,
        text: str | None = None,
        voice: str | None = None,
        language: str | None = None,
    ) -> Outcome:
        said = Say(text, voice, language) if text else None
        actions: tuple[Action, ...] = (said, Hangup()) if said else (Hangup(),)
        return Outcome(reply=self.renderer.render(actions, params.url_root, INCOMING_STEP))

    # ---- resume codes ---------------------------------------------------------------------
    def _code_answer(
        self, flow: Flow, session: Session, params: Inbound, notes: list[Note]
    ) -> Outcome:
        code = (params.digits or "").rstrip("#")
        if not code:
            notes.append(Note(EventName.RESUME_CODE_SKIPPED))
            return Outcome(flow=flow, turn=self._fresh(flow, params))
        decision = self.codes.redeem(code, session.caller)
        if isinstance(decision, Redeemed):
            return self._resume_by_code(code, decision, session, params)
        if decision == Refusal.THROTTLED:
            notes.append(Note(EventName.RESUME_CODES_THROTTLED))
        attempts = session.no_match_count + 1
        notes.append(Note(EventName.RESUME_CODE_WRONG, {"attempt": attempts}))
        if attempts >= resume.CODE_ATTEMPTS:
            notes.append(Note(EventName.RESUME_CODE_FAILED))
            return Outcome(flow=flow, turn=self._fresh(flow, params, "resume_code_retry"))
        retry = session.evolve(no_match_count=attempts, step=session.step + 1)
        return Outcome(flow=flow, turn=resume.ask_code(flow, retry, retry=True))

    def _resume_by_code(
        self, code: str, found: Redeemed, session: Session, params: Inbound
    ) -> Outcome:
        now = self.clock()
        # Never attested: the new call's STIR/SHAKEN verdict is about a caller with no caller
        # ID, and says nothing about who made the call that left the code. Only the flow's
        # verify node gives sensitive values back here.
        moved = resume.carried_over(
            found.flow, found.previous, params.contact_id, now, attested=False
        ).evolve(
            caller=session.caller,
            resume_code=None,
            step=session.step + 1,
            identified=("resume_code",),
        )
        if found.flow.spec.resume.ask:  # as by caller ID: continue, or start over
            turn = resume.offer(found.flow, moved, self.env)
        else:
            turn = resume.restore(found.flow, moved, now, self.env)
        return Outcome(
            flow=found.flow,
            turn=turn,
            also_delete=(self.store.keys.session(found.owner),),
            redeemed=(code, found),
        )

    def _issue_code(self, flow: Flow, params: Inbound, turn: Turn) -> Turn:
        """Give a caller without caller ID a resume code at their first question, once."""
        session = turn.session
        if (
            params.caller.recognised
            or not flow.spec.resume.codes
            or session.status != Status.ACTIVE
            or session.waiting != Waiting.INPUT
            or session.resume_code
        ):
            return turn
        code = self.codes.issue(flow, session)
        if code is None:
            return turn  # the code space is crowded; this caller simply gets no code
        at = next(i for i, a in enumerate(turn.actions) if isinstance(a, Gather))
        actions = (
            *turn.actions[:at],
            resume.announce_code(flow, code, session.variables),
            *turn.actions[at:],
        )
        return turn.evolve(session=session.evolve(resume_code=code), actions=actions).noting(
            Note(EventName.RESUME_CODE_ISSUED)
        )

    # ---- pieces ---------------------------------------------------------------------------
    def _load(self, caller: str, call_sid: str | None = None, step: int | None = None) -> Loaded:
        try:
            return self.store.load(caller, call_sid, step)
        except SessionCorrupt as exc:
            self._discard(caller, call_sid, exc)
            return Loaded(None, 0)

    def _discard(self, caller: str, call_sid: str | None, exc: SessionCorrupt) -> None:
        """Drop the session a load found corrupt (the call's own, if that was the one read)."""
        log.error("discarding corrupt session of %s: %s", masked(caller), exc.reason)
        self.store.discard(caller, call_sid if exc.own else None)

    def _settle(self, flow: Flow, turn: Turn, deadline: float, dips: StepDips) -> Turn:
        """Run the data dips a turn asks for, feeding results back, until the turn is final.

        The dips share the request's time budget: each gets at most what is left of it, so a
        chain of slow back-ends ends in ``on_error`` before Twilio's 15 s limit, not in
        Twilio's own error message. The settled turn keeps every other effect, in order.
        Side-effecting dips go through ``dips`` (claimed, run once; raises
        :class:`StepClaimed` when another request holds the step).
        """
        actions: list[Action] = list(turn.actions)
        effects = [e for e in turn.effects if not isinstance(e, HttpRequest)]
        visits: dict[str, int] = {}
        for count in range(MAX_FETCHES + 1):
            request = turn.fetch
            if request is None:
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
                if request.timeout > left:
                    request = replace(request, timeout=left)
                node = turn.session.node or ""
                visits[node] = visit = visits.get(node, -1) + 1
                result = dips.fetch(request, node, visit, self.clock())
            turn = engine.step(flow, turn.session, result, self.env)
            actions.extend(turn.actions)
            effects.extend(e for e in turn.effects if not isinstance(e, HttpRequest))
        return Turn(turn.session, tuple(actions), tuple(effects))

    def _holder_replied(self, params: Inbound, step: int, deadline: float) -> bool:
        """Wait, within the budget, for the request holding this step to save its reply."""
        pause, longest = CLAIM_POLL_SECONDS
        while time.monotonic() + pause < deadline - CLAIM_WAIT_MARGIN:
            time.sleep(pause)
            if self._load(params.caller.key, params.contact_id, step).reply is not None:
                return True
            pause = min(pause * 2, longest)
        return False

    def _unanswered(self, params: Inbound) -> None:
        """Record that an outbound call was never answered (busy, no answer, failed)."""
        stream = self.store.events
        if stream is None:
            return
        event = outbound_event(
            EventName.OUTBOUND_UNANSWERED,
            params.caller.key,
            params.contact_id,
            self.clock(),
            {"call_status": params.status},
        )
        stream.append(params.caller.key, [stream.encode(event.to_dict())])
        emit_all(self.sinks, [event])

    def _emit_unsaved(
        self, params: Inbound, session: Session | None, notes: Sequence[Note]
    ) -> None:
        """Events of a decision that saved nothing: to the sinks (log, metrics), not the stream."""
        if not notes:
            return
        about = session if session is not None and _owned(session, params) else None
        now = self.clock()
        if about is None:
            about = Session(
                caller=params.caller.key, flow_id="", flow_version="", call_sid=params.contact_id
            )
        emit_all(self.sinks, from_effects(notes, about, None, now))


def _in_transfer(session: Session) -> bool:
    """Whether ``session``'s call waits in the transfer made at its current step (its result
    has not come back, nor has the call's end)."""
    return (
        session.status == Status.TRANSFERRED
        and session.call_status is None
        and _handed_over_at(session, session.step)
    )


def _handed_over_at(session: Session, step: int) -> bool:
    """Whether ``session`` made a handoff at ``step`` (from any node it went through)."""
    made = set(session.handoffs)
    nodes = {visit.node for visit in session.trail}
    return any(handoff.handoff_id(session.call_sid, step, node) in made for node in nodes)


def _owned(session: Session | None, params: Inbound) -> bool:
    return session is not None and session.call_sid == params.contact_id
