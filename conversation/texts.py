"""Inbound texts: STOP, START and HELP, a known caller's text joining their conversation, and
the replies a flow lets its callers text.

:meth:`InboundTexts.receive` takes one parsed text (:class:`Text`) and answers with the text to
send back (``None``: send nothing):

- **Once per MessageSid**: the text is claimed first (:mod:`context.text_replies`); a retried
  webhook gets the reply the first one sent and records nothing.
- **STOP / START** (and their synonyms, :mod:`ivr.keywords`): an ``sms_opted_out`` /
  ``sms_opted_in`` event goes on the event stream (the history writer applies it to the
  number's consents: the durable path) and the consents are written at once as well, when the
  database answers. Either one is enough; a failing one is logged. The confirmation is sent
  unless Twilio's Advanced Opt-Out (``OptOutType``) already sent its own.
- **HELP**: the flow's ``sms.help``, else :data:`HELP`.
- **Any other text**, from a caller with a session in the flow of the number texted or a
  customer the history card knows: an ``sms_received`` event in their conversation (the writer
  makes it an ``sms`` interaction of that customer and conversation). A text the flow's
  ``sms.replies`` names runs the flow from that node (:meth:`ConversationService.text`) and the
  reply is what the node says; any other gets ``sms.otherwise`` (else :data:`OTHERWISE`); a
  sender with no conversation gets ``sms.unknown`` (else :data:`UNKNOWN`).
- **Opted out**: a number whose consent to texts is withdrawn gets nothing back (but the STOP
  confirmation); while the database cannot say, nothing is sent either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from context.callers import masked
from context.history import consents, opt_outs
from context.sessions import Loaded
from context.text_replies import TextReplies
from conversation.events import ConversationEvent, emit_all
from conversation.inbound import Inbound
from ivr.errors import SessionCorrupt, StoreUnavailable
from ivr.flow import Flow
from ivr.keywords import Keyword, keyword, of_opt_out_type
from ivr.session import Session
from ivr.states import EventName
from ivr.turn import Action, Say

if TYPE_CHECKING:
    from conversation.service import ConversationService, Renderer

log = logging.getLogger("omnivoice.texts")

STOPPED = (
    "You are unsubscribed and will get no more texts from this number. Reply START to "
    "subscribe again."
)
STARTED = "You are subscribed again to texts from this number. Reply STOP to unsubscribe."
HELP = (
    "Text your answer to reply to us, or call this number to talk to us. Reply STOP to stop "
    "texts from this number, START to get them again."
)
OTHERWISE = "Sorry, we didn't understand that reply."
UNKNOWN = "Sorry, we can't find a conversation with you. Please call this number to talk to us."
TEXT_STEP = 0  # an inbound text's step, for the session load (it has one step only)
MAX_TEXT_KEPT = 1600  # characters of a text its event keeps


@dataclass(frozen=True)
class Text:
    """One inbound text, parsed at the edge (see :mod:`webhooks.sms`)."""

    inbound: Inbound  # contact_id: the MessageSid; caller: the sender; speech: the body
    body: str
    media: int = 0  # NumMedia: pictures and the like, which a flow cannot read
    service_sid: str | None = None  # MessagingServiceSid
    opt_out_type: str | None = None  # Twilio's Advanced Opt-Out already handled a keyword


@dataclass(frozen=True)
class Found:
    """Whom a text is from, as the session load found them."""

    flow: Flow | None  # the flow of the number texted
    session: Session | None  # the sender's session in that flow, if any
    conversation: str  # the conversation the text joins ("": none known)


class InboundTexts:
    """Answers inbound texts (see the module docstring)."""

    def __init__(
        self,
        service: ConversationService,
        replies: TextReplies,
        history: Callable[[], sessionmaker[DbSession]],
        renderer: Renderer,
    ) -> None:
        self.service = service
        self.replies = replies
        self.history = history
        self.renderer = renderer

    def receive(self, text: Text) -> str | None:
        """Answer ``text``: the reply to send (rendered messaging TwiML), ``None`` for none.

        Raises:
            StoreUnavailable: Redis does not answer (a STOP or START is recorded all the same).
        """
        inbound = text.inbound
        caller, sid = inbound.caller.key, inbound.contact_id
        word = of_opt_out_type(text.opt_out_type) or keyword(text.body)
        try:
            claim = self.replies.claim(caller, sid)
        except StoreUnavailable:
            if word in (Keyword.STOP, Keyword.START):  # no stream, no session: SQL at least
                return self._opt(text, word, None)
            raise
        if not claim.first:
            log.info("text %s again: answered as before", sid)
            return claim.reply or None  # "" kept: the first one sent no reply either
        try:
            reply = self._answer(text, word)
        except Exception:
            self.replies.release(caller, sid)  # Twilio's retry will be handled afresh
            raise
        try:
            self.replies.keep(caller, sid, reply or "")
        except StoreUnavailable as exc:
            log.error("the reply to text %s was not kept for a retry: %s", sid, exc)
        return reply

    def _answer(self, text: Text, word: Keyword | None) -> str | None:
        try:
            found = self._find(text)
        except StoreUnavailable:
            if word in (Keyword.STOP, Keyword.START):
                return self._opt(text, word, None)
            raise
        if word in (Keyword.STOP, Keyword.START):
            return self._opt(text, word, found)
        if not self._may_text(text.inbound.caller.key):
            if word is None:  # their text is kept all the same
                self._record(text, EventName.SMS_RECEIVED, found, {})
            return None
        spec = found.flow.spec.sms if found.flow is not None else None
        if word == Keyword.HELP:
            if text.opt_out_type:
                return None  # Twilio's Advanced Opt-Out answered HELP itself
            return self._say((spec.help if spec else None) or HELP)
        if found.session is not None and spec is not None:
            node = _replies(spec.replies).get(text.body.strip().casefold())
            if node is not None:
                reply = self.service.text(
                    text.inbound, node, self.renderer, _data(text), flow=found.session.flow_id
                )
                if reply is not None:
                    return reply
        self._record(text, EventName.SMS_RECEIVED, found, {})
        if found.conversation:
            return self._say((spec.otherwise if spec else None) or OTHERWISE)
        return self._say((spec.unknown if spec else None) or UNKNOWN)

    # ---- STOP and START ---------------------------------------------------------------------
    def _opt(self, text: Text, word: Keyword, found: Found | None) -> str | None:
        """Record an opt-out (or opt-in) on the stream and in SQL; the confirmation to send."""
        granted = word == Keyword.START
        name = EventName.SMS_OPTED_IN if granted else EventName.SMS_OPTED_OUT
        streamed = found is not None and self._record(text, name, found, {"keyword": _word(text)})
        written = self._write_consent(text, granted)
        if not streamed and not written:
            log.error(
                "the %s of %s could not be recorded: neither Redis nor the database answered",
                name.value, masked(text.inbound.caller.key),
            )  # fmt: skip
        if text.opt_out_type:
            return None  # Twilio's Advanced Opt-Out sent its own confirmation
        return self._say(STARTED if granted else STOPPED)

    def _write_consent(self, text: Text, granted: bool) -> bool:
        number = text.inbound.caller.key
        if text.inbound.caller.kind != "number":
            return False
        at = datetime.fromtimestamp(self.service.clock(), UTC)
        try:
            with self.history().begin() as db:
                opt_outs.apply(db, number, granted, f"texted {_word(text)}", at)
        except (SQLAlchemyError, OSError) as exc:
            log.warning(
                "consent of %s not written at once (the event stream has it): %s",
                masked(number), type(exc).__name__,
            )  # fmt: skip
            return False
        return True

    def _may_text(self, number: str) -> bool:
        """Whether ``number`` may be texted back; ``False`` while the database cannot say."""
        try:
            with self.history()() as db:
                return consents.decide(db, number, opt_outs.CHANNEL, consents.SERVICE).allowed
        except (SQLAlchemyError, OSError) as exc:
            log.warning(
                "not replying to %s: its consent cannot be checked (%s)",
                masked(number), type(exc).__name__,
            )  # fmt: skip
            return False

    # ---- who, and what is recorded ----------------------------------------------------------
    def _find(self, text: Text) -> Found:
        inbound = text.inbound
        flow = self.service.catalog.for_number(inbound.to)
        try:
            loaded = self.service.store.load(inbound.caller.key, inbound.contact_id, TEXT_STEP)
        except SessionCorrupt as exc:  # the conversation service discards it at its next load
            log.error("the session of %s cannot be read: %s", masked(inbound.caller.key), exc)
            loaded = Loaded(None, 0)
        session = loaded.session
        if session is not None and flow is not None and session.flow_id != flow.id:
            # The caller has called another flow's number since: this flow's session, if
            # any, is kept aside (one session per caller per flow).
            session = self.service.store.load_parked(inbound.caller.key, flow.id).session
        elif flow is None:
            session = None
        if session is not None and session.conversation:
            return Found(flow, session, session.conversation)
        card = loaded.card or {}
        opened = card.get("open_conversation")
        ref = opened.get("ref") if isinstance(opened, dict) else None
        return Found(flow, session, ref if isinstance(ref, str) else "")

    def _record(self, text: Text, name: EventName, found: Found, extra: dict[str, Any]) -> bool:
        """Put one event about ``text`` on the stream (and give it to the sinks)."""
        stream = self.service.store.events
        if stream is None:
            return False
        inbound = text.inbound
        session = found.session
        event = ConversationEvent(
            name=name,
            at=self.service.clock(),
            caller=inbound.caller.key,
            call_sid=session.call_sid if session is not None else inbound.contact_id,
            channel="sms",
            conversation=found.conversation,
            flow=found.flow.id if found.flow is not None else None,
            version=session.flow_version if session is not None else None,
            node=session.node if session is not None else None,
            data={**_data(text), **extra},
        )
        if not stream.append(inbound.caller.key, [stream.encode(event.to_dict())]):
            return False
        emit_all(self.service.sinks, [event])
        return True

    def _say(self, words: str) -> str:
        return self.renderer.render(_said(words), "", TEXT_STEP)


def _said(words: str) -> tuple[Action, ...]:
    return (Say(words),)


def _replies(replies: dict[str, str]) -> dict[str, str]:
    """A flow's ``sms.replies`` keyed as texts are matched: trimmed, without case."""
    return {key.strip().casefold(): node for key, node in replies.items()}


def _data(text: Text) -> dict[str, Any]:
    """What an event keeps of a text."""
    data: dict[str, Any] = {
        "message_sid": text.inbound.contact_id,
        "to": text.inbound.to,
        "text": text.body[:MAX_TEXT_KEPT],
    }
    if text.media:
        data["media"] = text.media
    if text.service_sid:
        data["service"] = text.service_sid
    return data


def _word(text: Text) -> str:
    return (text.opt_out_type or text.body).strip().upper()[:16]
