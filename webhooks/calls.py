"""The imperative shell around the engine: load the session, step, run data dips, save, render.

One webhook is one :class:`CallService` method. Each makes one load and one save (two Redis round
trips); a save that loses a race reloads and tries again, and then usually finds the reply the
winner cached. A retried webhook (same CallSid and step) gets the cached reply, so the flow never
advances twice. Failures become a caller-friendly fallback in the views, never an HTTP 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from channels.http import Fetcher
from context.callers import Caller, identify, masked, to_e164
from context.sessions import Loaded, SessionStore
from ivr import engine
from ivr.catalog import Catalog
from ivr.errors import SessionContention, SessionCorrupt
from ivr.flow import Flow
from ivr.session import ACTIVE, Session
from ivr.turn import Action, Answer, FetchResult, Turn
from webhooks import twiml

log = logging.getLogger("omnivoice.calls")

INCOMING_STEP = -1
SAVE_ATTEMPTS = 3
MAX_FETCHES = 5
TERMINAL_CALL_STATUSES = {"completed", "busy", "failed", "no-answer", "canceled"}


@dataclass(frozen=True)
class CallParams:
    """The parts of a Twilio voice webhook Omnivoice uses, parsed once."""

    call_sid: str
    caller: Caller
    to: str | None
    digits: str | None = None
    speech: str | None = None
    confidence: float | None = None
    call_status: str | None = None

    @classmethod
    def parse(cls, form: Mapping[str, str], default_region: str = "US") -> CallParams:
        """Read a webhook's form; missing or odd fields become ``None``, never an error."""
        call_sid = (form.get("CallSid") or "").strip()[:64] or "CA-unknown"
        return cls(
            call_sid=call_sid,
            caller=identify(form.get("From"), call_sid, default_region),
            to=to_e164(form.get("To"), default_region),
            digits=_digits(form.get("Digits")),
            speech=(form.get("SpeechResult") or "").strip()[:512] or None,
            confidence=_float(form.get("Confidence")),
            call_status=(form.get("CallStatus") or "").strip().lower() or None,
        )


class CallService:
    """Runs calls: the three Twilio-facing operations of a voice flow."""

    def __init__(
        self,
        catalog: Catalog,
        store: SessionStore,
        fetcher: Fetcher,
        answer_url: Callable[[int], str],
        env: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.fetcher = fetcher
        self.answer_url = answer_url
        self.env = dict(env or {})
        self.clock = clock

    # ---- webhooks -------------------------------------------------------------------------
    def incoming(self, params: CallParams) -> str | None:
        """A new call: start the flow for the called number. ``None`` means no flow to run."""
        for _ in range(SAVE_ATTEMPTS):
            loaded = self._load(params.caller.key, params.call_sid, INCOMING_STEP)
            if loaded.reply and _owned(loaded.session, params):
                return loaded.reply
            flow = self.catalog.for_number(params.to)
            if flow is None:
                log.error("no flow answers %s and there is no default flow", params.to)
                return None
            turn = self._settle(flow, self._begin(flow, params, loaded))
            reply = self._render(turn)
            if self._save(turn, loaded, reply, INCOMING_STEP, params, index_call=True):
                return reply
        raise SessionContention(params.call_sid)

    def answer(self, params: CallParams, step: int) -> str | None:
        """The caller's answer to the gather asked at ``step``."""
        for _ in range(SAVE_ATTEMPTS):
            loaded = self._load(params.caller.key, params.call_sid, step)
            session = loaded.session
            if session is None or not _owned(session, params):
                if session is None or self.store.caller_of(params.call_sid) is None:
                    self._note(params, "unknown_call_restarted", step=step)
                    return self.incoming(params)
                self._note(params, "superseded_call", step=step)
                return twiml.hangup()
            if loaded.reply:
                self._note(params, "duplicate_webhook", step=step)
                return loaded.reply
            flow = self._flow_for(session)
            if session.status != ACTIVE:
                return twiml.hangup()
            if flow is None:
                self._note(params, "flow_version_gone", version=session.flow_version)
                return self.incoming(params)
            if session.step != step or session.waiting != "input":
                turn = engine.start(flow, caller=session.caller, call_sid=params.call_sid,
                                    at=self.clock(), env=self.env, node=session.node,
                                    session=session)  # fmt: skip
            else:
                event = Answer(params.digits, params.speech, params.confidence, at=self.clock())
                turn = engine.step(flow, session, event, self.env)
            turn = self._settle(flow, turn)
            reply = self._render(turn)
            if self._save(turn, loaded, reply, step, params):
                return reply
        raise SessionContention(params.call_sid)

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

    # ---- pieces ---------------------------------------------------------------------------
    def _begin(self, flow: Flow, params: CallParams, loaded: Loaded) -> Turn:
        """The first turn of a call (the resume policy decides here once it exists)."""
        return engine.start(
            flow, caller=params.caller.key, call_sid=params.call_sid, at=self.clock(), env=self.env
        )

    def _load(self, caller: str, call_sid: str | None = None, step: int | None = None) -> Loaded:
        try:
            return self.store.load(caller, call_sid, step)
        except SessionCorrupt as exc:
            log.error("discarding corrupt session of %s: %s", masked(caller), exc.reason)
            self.store.discard(caller)
            return Loaded(None, 0)

    def _flow_for(self, session: Session) -> Flow | None:
        return self.catalog.version(session.flow_version)

    def _settle(self, flow: Flow, turn: Turn) -> Turn:
        """Run the data dips a turn asks for, feeding results back, until the turn is final."""
        actions: list[Action] = list(turn.actions)
        notes = list(turn.notes)
        for count in range(MAX_FETCHES + 1):
            if turn.fetch is None:
                break
            if count == MAX_FETCHES:
                result = FetchResult(
                    ok=False, error="too many data dips in one turn", at=self.clock()
                )
            else:
                result = self.fetcher.fetch(turn.fetch)
            turn = engine.step(flow, turn.session, result, self.env)
            actions.extend(turn.actions)
            notes.extend(turn.notes)
        return Turn(turn.session, tuple(actions), None, tuple(notes))

    def _render(self, turn: Turn) -> str:
        return twiml.render(turn.actions, self.answer_url(turn.session.step))

    def _save(
        self,
        turn: Turn,
        loaded: Loaded,
        reply: str,
        step: int,
        params: CallParams,
        index_call: bool = False,
    ) -> bool:
        saved = self.store.save(
            turn.session, loaded.seq, reply, reply_step=step, index_call=index_call
        )
        if saved is None:
            self._note(params, "save_conflict", step=step)
            return False
        for note in turn.notes:
            self._note(params, note.name, **note.data)
        return True

    def _note(self, params: CallParams, name: str, **data: Any) -> None:
        log.info(
            name,
            extra={"call_sid": params.call_sid, "caller": masked(params.caller.key), "data": data},
        )


def _owned(session: Session | None, params: CallParams) -> bool:
    return session is not None and session.call_sid == params.call_sid


def _digits(raw: str | None) -> str | None:
    if not raw:
        return None
    # Keep odd characters: they match no route and fail validation, so they reach no_match.
    return raw.strip()[:64] or None


def _float(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw not in (None, "") else None
    except (TypeError, ValueError):
        return None
    if value is None or value != value or not 0.0 <= value <= 1.0:  # NaN or out of range
        return None
    return value
