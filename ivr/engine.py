"""The flow engine: a pure step function from (flow version, session, event) to a :class:`Turn`.

:func:`start` begins a call at a node (the flow's start unless told otherwise); :func:`step`
applies the caller's answer or a data dip's result. Nothing here performs I/O: a data dip is
returned as ``Turn.fetch`` for the shell to run and report back with :class:`FetchResult`.

Retries follow the VoiceXML model: each gather counts its no-input and no-match events; attempt
*n* plays ``reprompts[n-1]`` (or ``reprompt``) and asks again, and once ``retries`` are used up the
call goes to ``then`` (else the flow's ``fallback`` node, else a polite goodbye). A gather's
``max_attempts`` ends the node sooner, counting both kinds together; every failed try is also
kept for the whole call in ``session.attempts`` (see :mod:`ivr.attempts`). A record node waits
for its message, which :func:`after_recording` applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from ivr import (
    answers,
    attempts,
    blocks,
    handoff,
    history,
    hours,
    languages,
    messages,
    outgoing,
    sensitive,
    templates,
)
from ivr.errors import EngineError, UnknownNodeError
from ivr.flow import Flow
from ivr.schema import (
    GatherSpec,
    Node,
    PausePart,
    PlayPart,
    Prompt,
    RetrySpec,
    SayPart,
    SendEmailSpec,
    SendSmsSpec,
    TransferSpec,
    WaitForSpec,
)
from ivr.session import Session, Visit
from ivr.states import EventName, Status, TransferResult, Waiting
from ivr.turn import (
    Action,
    Answer,
    AttachHandoff,
    Effect,
    Event,
    FetchResult,
    Gather,
    Hangup,
    HttpRequest,
    Note,
    Pause,
    Play,
    Record,
    Recorded,
    RequestCallback,
    Say,
    SendMessage,
    Speech,
    Transfer,
    Turn,
)

MAX_HOPS = 64
KEYPAD = set("0123456789*#")
NO_INPUT_TEXT = "Sorry, I didn't hear anything."
NO_MATCH_TEXT = "Sorry, I didn't understand that."
GIVE_UP_TEXT = "Sorry, we could not continue. Goodbye."
PAGE_WAIT_TEXT = (
    "I'm still here. Take your time with the page I sent you, or press any key to go on."
)
NOBODY_TEXT = "Sorry, nobody can take your call right now. Please call again later. Goodbye."
HANDOFFS_KEPT = 5  # handoff ids a session remembers (the bundle lists earlier ones)
_ENDS_TRANSFER = {
    TransferResult.CONNECTED: "talked to a person",
    TransferResult.ABANDONED: "hung up while being transferred",
    TransferResult.REDIRECTED: "taken by an agent from the console",
}
DEFAULT_RETRY = RetrySpec()


def start(
    flow: Flow,
    *,
    caller: str,
    call_sid: str,
    at: float,
    env: Mapping[str, Any] | None = None,
    node: str | None = None,
    session: Session | None = None,
    lead: tuple[Action, ...] = (),
    card: Mapping[str, Any] | None = None,
    variables: Mapping[str, Any] | None = None,
    identified: tuple[str, ...] = (),
    conversation: str = "",
) -> Turn:
    """Begin a call at ``node`` (default: the flow's start).

    With ``session`` the caller keeps its variables (a resumed call); otherwise a fresh session is
    made, knowing the customer ``card`` (see :mod:`ivr.history`) and holding ``variables`` (an
    outbound call's, say) and how the caller is ``identified``. ``lead`` is spoken first (a
    welcome-back line, for instance).
    """
    if session is None:
        session = Session.new(
            caller=caller,
            flow_id=flow.id,
            flow_version=flow.version,
            call_sid=call_sid,
            started_at=at,
            updated_at=at,
            card=dict(card or {}),
            variables=dict(variables or {}),
            identified=identified,
            conversation=conversation,
        )
    else:
        session = session.evolve(
            call_sid=call_sid, status=Status.ACTIVE, ended_reason=None, updated_at=at
        )
    session = session.evolve(
        node=None, no_input_count=0, no_match_count=0, sensitive=tuple(flow.spec.sensitive)
    )
    runner = _Runner(flow, session, env or {})
    runner.actions.extend(lead)
    return runner.run(node or flow.spec.start)


def step(flow: Flow, session: Session, event: Event, env: Mapping[str, Any] | None = None) -> Turn:
    """Apply ``event`` to ``session`` (which must be waiting for it at a node) on ``flow``.

    The engine answers a node's gather and a data dip; a returning caller's "continue or start
    over?" is :func:`ivr.resume.answer_offer`, and :func:`ivr.steps.advance` picks between them.
    """
    if session.status != Status.ACTIVE or session.node is None:
        raise EngineError(f"The session is {session.status}; nothing is waiting for an answer.")
    if session.node not in flow.spec.nodes:
        raise UnknownNodeError(flow.id, session.node)
    session = session.evolve(step=session.step + 1, updated_at=event.at)
    runner = _Runner(flow, session, env or {})
    if isinstance(event, Answer) and session.waiting == Waiting.INPUT:
        return runner.answer(event)
    if isinstance(event, Answer) and session.waiting == Waiting.PAGE:
        return runner.poll(event)
    if isinstance(event, FetchResult) and session.waiting == Waiting.FETCH:
        return runner.fetched(event)
    raise EngineError(f"Node {session.node!r} is waiting for {session.waiting}, not {event!r}.")


def after_transfer(
    flow: Flow,
    session: Session,
    result: TransferResult,
    at: float,
    env: Mapping[str, Any] | None = None,
) -> Turn:
    """Carry on after a transfer ended with ``result`` (the session is at its transfer node).

    A caller who reached a person, hung up, or was moved to an agent is done with the flow. For
    the others the transfer's ``on`` picks the node (``failed`` stands in for an outcome it does
    not name), else the flow's ``fallback`` unless that is itself a transfer, else a goodbye:
    the caller never hears an error.
    """
    name = session.node or ""
    session = session.evolve(step=session.step + 1, updated_at=at)
    runner = _Runner(flow, session, env or {})
    spec = flow.spec.nodes[name].transfer if name in flow.spec.nodes else None
    handoff_id = session.handoffs[-1] if session.handoffs else None
    if result in _ENDS_TRANSFER:
        runner.note(EventName.TRANSFER_RESULT, node=name, result=result, handoff_id=handoff_id)
        if result == TransferResult.CONNECTED:
            runner.actions.append(Hangup())
        runner.session = runner.session.evolve(ended_reason=_ENDS_TRANSFER[result])
        return runner.turn()
    routes: dict[str, str] = {str(k): v for k, v in spec.on.items()} if spec else {}
    target = routes.get(result.value) or routes.get("failed")
    fallback = flow.spec.fallback
    if target is None and fallback and fallback != name and not flow.node(fallback).transfer:
        target = fallback
    runner.note(
        EventName.TRANSFER_RESULT, node=name, result=result, handoff_id=handoff_id, next=target
    )
    runner.session = runner.session.evolve(status=Status.ACTIVE, ended_reason=None, waiting=None)
    runner.reason = f"the transfer at {name} ended: {result.value.replace('_', ' ')}"
    if target is None:
        nobody = runner.message("nobody_available", NOBODY_TEXT)
        runner.actions.extend((Say(nobody, *runner.voice()), Hangup()))
        return runner.end(Status.COMPLETED, f"transfer {result.value}, nowhere to go")
    return runner.run(target)


def after_recording(
    flow: Flow, session: Session, recorded: Recorded, env: Mapping[str, Any] | None = None
) -> Turn:
    """Carry on after the record node the session waits at has its message (or none).

    The recording (``url``, ``duration``, ``digits``) is kept on the session by node, in the
    node's ``save_as`` variable and in a ``recording`` event; the call then goes to ``next``,
    or hangs up.
    """
    name = session.node or ""
    if session.waiting != Waiting.RECORDING or name not in flow.spec.nodes:
        raise EngineError(f"Node {name!r} is waiting for {session.waiting}, not a recording.")
    node = flow.node(name)
    found = {"url": recorded.url, "duration": recorded.duration, "digits": recorded.digits}
    variables = session.variables
    if node.record and node.record.save_as:
        variables = {**variables, node.record.save_as: found}
    session = session.evolve(
        step=session.step + 1,
        updated_at=recorded.at,
        waiting=None,
        variables=variables,
        recordings={
            **session.recordings,
            name: {**found, "status": "recorded" if recorded.url else "empty"},
        },
    )
    runner = _Runner(flow, session, env or {})
    runner.note(EventName.RECORDING, node=name, **runner.session.recordings[name])
    if node.following:
        return runner.run(node.following)
    runner.actions.append(Hangup())
    return runner.end(Status.COMPLETED, f"ended at {name}")


def recording_update(
    session: Session, node: str, update: Mapping[str, Any], at: float
) -> tuple[Session, Note]:
    """The session with Twilio's later word on ``node``'s recording (its status callback or
    transcription) merged in, and the ``recording`` event that records it."""
    known = session.recordings.get(node)
    merged = {**(known if isinstance(known, dict) else {}), **update}
    changed = session.evolve(recordings={**session.recordings, node: merged}, updated_at=at)
    return changed, Note(EventName.RECORDING, {"node": node, **merged})


def hold_prompt(flow: Flow, node: str, queue: Mapping[str, Any]) -> tuple[Speech, ...]:
    """What a caller queued by ``node`` hears on one pass of the hold loop.

    The prompt sees ``queue`` only (``position``, ``wait``, ``average_wait``, ``size``): the
    hold loop runs without loading the caller's session.
    """
    spec = flow.spec.nodes[node].transfer if node in flow.spec.nodes else None
    session = Session(caller="", flow_id=flow.id, flow_version=flow.version, call_sid="")
    runner = _Runner(flow, session.evolve(variables={"queue": dict(queue)}), {})
    # A prompt naming a value Twilio did not send (a TaskRouter queue has no position) would
    # read "number None in line": the default sentences say only what is known.
    unknown = [f"queue.{key}" for key, value in queue.items() if value is None]
    if spec is not None and spec.hold is not None and not _names_any(spec.hold, unknown):
        return runner.parts(spec.hold)
    position = queue.get("position")
    if not isinstance(position, int) or position < 1:
        default = "Thank you for waiting. Someone will be with you shortly."
    else:
        default = f"Thank you for waiting. You are number {position} in line."
    messages = flow.spec.messages
    worded = messages.wording("queue_hold", runner.voice()[1]) if messages is not None else None
    if worded is not None and not _names_any(worded, unknown):
        return (Say(runner.message("queue_hold", default), *runner.voice()),)
    return (Say(default, *runner.voice()),)


class _Runner:
    """Runs nodes for one turn, collecting actions and notes."""

    def __init__(self, flow: Flow, session: Session, env: Mapping[str, Any]) -> None:
        self.flow = flow
        self.session = session
        self.env = env
        self.actions: list[Action] = []
        self.effects: list[Effect] = []
        self.known = history.scope(session.card, session.call_sid, session.updated_at)
        # The time of this turn, as the service's clock passed it in: now, open_now, holiday...
        self.clock = (
            hours.clock_variables(flow.spec.timezone, flow.spec.hours, session.updated_at)
            if flow.uses_clock
            else {}
        )
        self.reason: str | None = None  # why the call got here, when a node did not choose to
        spec = flow.spec  # the flow's own voice and language, when they are not templates
        static = templates.is_static(spec.language) and (
            spec.voice is None or templates.is_static(spec.voice)
        )
        self.fixed_voice = (spec.voice, spec.language) if static else None

    # ---- turn endings ---------------------------------------------------------------------
    def turn(self, fetch: HttpRequest | None = None) -> Turn:
        effects = (*self.effects, fetch) if fetch else tuple(self.effects)
        return Turn(self.session, tuple(self.actions), effects)

    def note(self, name: EventName, **data: Any) -> None:
        self.effects.append(Note(name, data))

    def end(self, status: Status, reason: str) -> Turn:
        self.session = self.session.evolve(status=status, ended_reason=reason, waiting=None)
        self.note(EventName.SESSION_ENDED, status=status, reason=reason)
        return self.turn()

    # ---- walking nodes --------------------------------------------------------------------
    def run(self, name: str) -> Turn:
        for _ in range(MAX_HOPS):
            if name not in self.flow.spec.nodes:
                raise UnknownNodeError(self.flow.id, name)
            node = self.flow.node(name)
            # Entering a node (even the same one again) starts its retry count afresh; a reprompt
            # does not come through here.
            session = self.session
            self.session = session.visited(
                Visit(name),
                node=name,
                no_input_count=0,
                no_match_count=0,
                checkpoint=name if node.checkpoint else session.checkpoint,
            )
            if node.use:  # a block: its parameters for its nodes, then its start
                self.enter_block(name, node)
                name = node.goto or ""
                continue
            if node.set:
                self.assign(node.set)
            if node.verified and "verified" not in self.session.identified:
                self.session = self.session.evolve(
                    identified=(*self.session.identified, "verified")
                )
            if node.verified and (back := self.verification_passed()):
                self.speak(node.say)
                name = back
                continue
            if node.http:
                return self.turn(fetch=self.request(node))
            following = self.finish(name, node)
            if isinstance(following, Turn):
                return following
            name = following
        self.note(EventName.LOOP_GUARD, node=name, hops=MAX_HOPS)
        return self.give_up("loop")

    def finish(self, name: str, node: Node) -> Turn | str:
        """Speak the node's parts, then end the turn (a Turn) or name the next node."""
        if node.topic:  # what the conversation is about, for the history and the next call
            self.note(EventName.TOPIC, node=name, topic=self.text(node.topic)[:200])
        if node.send_sms:
            self.send_sms(name, node.send_sms)
        if node.send_email:
            self.send_email(name, node.send_email)
        self.speak(node.say)
        if node.play:
            self.actions.append(Play(self.text(node.play), 1, _personal(node.play)))
        if node.pause:
            self.actions.append(Pause(max(1, round(node.pause))))
        if node.gather:
            self.session = self.session.evolve(waiting=Waiting.INPUT, checkpoint=name)
            self.actions.append(self.gather(node.gather, ()))
            return self.turn()
        if node.record:
            return self.record(name, node)
        if node.wait_for:
            return self.wait(name, node.wait_for)
        if node.callback:
            self.request_callback(node)
        if node.transfer:
            return self.transfer(name, node.transfer)
        for case in node.branch or []:
            if templates.evaluate(self.flow.expression(case.when), self.variables()):
                return case.then
        if node.following and not node.hangup:
            return node.following
        self.actions.append(Hangup())
        return self.end(Status.COMPLETED, f"ended at {name}")

    def transfer(self, name: str, spec: TransferSpec) -> Turn:
        """Hand the caller over from node ``name``, publishing the handoff bundle."""
        route, target = _route(spec)
        session = self.session
        context = {key: _lookup(self.variables(), key) for key in spec.context}
        handoff_id = handoff.handoff_id(session.call_sid, session.step, name)
        handoffs = (*(h for h in session.handoffs if h != handoff_id), handoff_id)
        # The context stays in the session too: the caller's next call can read it.
        self.session = session.evolve(handoff=context, handoffs=handoffs[-HANDOFFS_KEPT:])
        node = self.flow.node(name)
        described = self.label(name) if node.description or node.topic else None
        reason = (
            self.agent_text(spec.reason)
            if spec.reason
            else self.reason or described or f"asked for a person at {name}"
        )
        labels = {visit.node: self.label(visit.node) for visit in self.session.trail}
        found = handoff.bundle(
            self.flow, self.session, name, handoff=handoff_id, route=route, target=target,
            reason=reason, context=context, at=self.session.updated_at, labels=labels,
        )  # fmt: skip
        chosen = self.session.variables.get("language")
        if isinstance(chosen, str) and chosen and isinstance(found.get("caller"), dict):
            # The language this call chose (a language menu) tells the agent more than the card.
            found["caller"] = {**found["caller"], "language": chosen}
        if spec.whisper:
            secrets = handoff.secrets_of(self.session, tuple(self.flow.spec.sensitive))
            found["summary"] = handoff.scrub(self.agent_text(spec.whisper), secrets)
        waits = spec.hold is not None or spec.hold_music is not None or spec.max_wait is not None
        transfer = Transfer(
            route, target, handoff_id, found, round(spec.timeout), spec.workflow,
            self.flow.id, name, waits,
        )  # fmt: skip
        self.actions.append(transfer)
        self.effects.append(AttachHandoff(found))
        return self.end(Status.TRANSFERRED, f"transfer at {name}")

    def record(self, name: str, node: Node) -> Turn:
        """Start recording the caller's message; :func:`after_recording` goes on from here."""
        spec = node.record
        assert spec is not None
        self.session = self.session.evolve(waiting=Waiting.RECORDING)
        self.actions.append(
            Record(
                name, self.session.caller, round(spec.max_length), spec.finish_on_key, spec.beep,
                round(spec.timeout), spec.transcribe,
            )
        )  # fmt: skip
        return self.turn()

    def enter_block(self, name: str, node: Node) -> None:
        """Evaluate a block's parameters for the nodes of this use of it (``params.x``)."""
        scope = self.variables()
        values = {key: self.value(raw, scope) for key, raw in (node.with_ or {}).items()}
        variables = self.session.variables
        entered = variables.get(blocks.PARAMS_VARIABLE)
        entered = dict(entered) if isinstance(entered, dict) else {}
        entered[name] = values
        self.session = self.session.evolve(variables={**variables, blocks.PARAMS_VARIABLE: entered})

    def send_sms(self, name: str, spec: SendSmsSpec) -> None:
        scope = self.variables()
        self.send(outgoing.sms(self.flow, self.session, name, spec, scope, self.template_failed))

    def send_email(self, name: str, spec: SendEmailSpec) -> None:
        scope = self.variables()
        self.send(outgoing.email(self.flow, self.session, name, spec, scope, self.template_failed))

    def send(self, made: SendMessage | outgoing.Unsent) -> None:
        """Queue a message (the shell sends it), or record at once why it cannot be sent."""
        at = self.session.updated_at
        if isinstance(made, SendMessage):
            self.session = messages.queued(self.session, made, at)
            self.effects.append(made)
            return
        self.session, note = messages.unsent(self.session, made.key, made.channel, made.reason, at)
        self.effects.append(note)

    def wait(self, name: str, spec: WaitForSpec) -> Turn | str:
        """Hold the caller until the page is submitted; a submission already made goes on."""
        state = self.session.pages.get(spec.page)
        if isinstance(state, dict) and state.get("status") == "submitted" and not state.get("used"):
            return self.use_submission(spec)
        since = self.session.updated_at
        pages = {
            **self.session.pages,
            spec.page: {**(state or {}), "waiting": {"node": name, "since": since}},
        }
        self.session = self.session.evolve(waiting=Waiting.PAGE, checkpoint=name, pages=pages)
        self.actions.append(self.hold_for_page(spec, first=True))
        return self.turn()

    def hold_for_page(self, spec: WaitForSpec, first: bool = False) -> Gather:
        """One round of the hold loop: the hold prompt (after the first round's silence), then
        silence; any key ends the wait."""
        hold = () if first else self.parts(spec.hold)
        if not first and not hold:
            hold = (Say(self.message("page_wait", PAGE_WAIT_TEXT), *self.voice()),)
        silence = Pause(max(1, round(spec.every)))
        return Gather(prompt=(*hold, silence), num_digits=1, timeout=1, language=self.voice()[1])

    def use_submission(self, spec: WaitForSpec) -> str:
        """Go on to ``on_submit``; the submission is used (a later wait needs a new one)."""
        state = dict(self.session.pages.get(spec.page) or {})
        state.pop("waiting", None)
        state["used"] = True
        pages = {**self.session.pages, spec.page: state}
        self.session = self.session.evolve(waiting=None, pages=pages)
        return spec.on_submit

    def poll(self, event: Answer) -> Turn:
        """A round of a wait for a page ended: submitted, a key pressed, timed out, or not yet."""
        name = self.session.node or ""
        spec = self.flow.node(name).wait_for
        if spec is None:
            raise EngineError(f"Node {name!r} does not wait for a page.")
        state = self.session.pages.get(spec.page)
        state = state if isinstance(state, dict) else {}
        if state.get("status") == "submitted" and not state.get("used"):
            return self.run(self.use_submission(spec))
        waited = self.session.updated_at - float((state.get("waiting") or {}).get("since", 0.0))
        unreachable = messages.page_unreachable(self.session, spec.page)
        if event.digits or waited >= spec.timeout or unreachable:
            by = "keypad" if event.digits else "message_failed" if unreachable else "timeout"
            self.note(
                EventName.PAGE_NOT_SUBMITTED, node=name, page=spec.page, by=by,
                waited=round(waited),
            )  # fmt: skip
            cleared = {k: v for k, v in state.items() if k != "waiting"}
            self.session = self.session.evolve(
                waiting=None, pages={**self.session.pages, spec.page: cleared}
            )
            return self.run(spec.on_timeout)
        self.actions.append(self.hold_for_page(spec))
        return self.turn()

    def label(self, name: str) -> str:
        """What a node is about, for an agent: its description (rendered), topic or name."""
        node = self.flow.spec.nodes.get(name)
        if node is None:
            return name
        text = node.description or node.topic
        return (self.agent_text(text) if text else name)[:200]

    def request_callback(self, node: Node) -> None:
        assert node.callback is not None
        reason = self.agent_text(node.callback.reason) if node.callback.reason else self.reason
        if reason:
            secrets = handoff.secrets_of(self.session, tuple(self.flow.spec.sensitive))
            reason = handoff.scrub(reason, secrets)
        handoffs = self.session.handoffs
        caller = self.session.caller
        self.effects.append(
            RequestCallback(
                caller if caller.startswith("+") else None,  # a withheld number: none to call
                (reason or f"asked at {self.label(self.session.node or '')}")[:200],
                handoffs[-1] if handoffs else None,
            )
        )

    def give_up(self, reason: str) -> Turn:
        fallback = self.flow.spec.fallback
        if fallback and fallback != self.session.node and reason != "loop":
            self.note(EventName.FALLBACK, reason=reason, node=fallback)
            self.reason = self.reason or f"{reason.replace('_', ' ')} at {self.session.node}"
            return self.run(fallback)
        self.actions.extend((Say(self.message("give_up", GIVE_UP_TEXT), *self.voice()), Hangup()))
        return self.end(Status.COMPLETED, f"gave up: {reason}")

    # ---- events ---------------------------------------------------------------------------
    def answer(self, event: Answer) -> Turn:
        name = self.session.node or ""
        node = self.flow.node(name)
        spec = node.gather
        if spec is None:
            raise EngineError(f"Node {name!r} has no gather to answer.")
        digits = (event.digits or "")[: answers.MAX_ANSWER] or None
        speech = answers.clean_speech(event.speech or "") or None
        if digits is None and speech is None:
            return self.retry(name, node, "no_input")
        heard = digits if digits is not None else speech
        if digits is not None and not set(digits) <= KEYPAD:
            self.note(EventName.NOT_KEYPAD_DIGITS, node=name)
            return self.retry(name, node, "no_match", heard)
        if (
            digits is None
            and event.confidence is not None
            and event.confidence < spec.min_confidence
        ):
            self.note(EventName.LOW_CONFIDENCE, node=name, confidence=event.confidence)
            return self.retry(name, node, "no_match", heard)
        target = answers.route(node.on or {}, digits, speech) if node.on else None
        value: str | None = digits if digits is not None else speech
        if target is None:
            target = node.following
            value = answers.accept(node.validation, value or "", spoken=digits is None)
            if target is None or value is None:
                return self.retry(name, node, "no_match", heard)
        shown = _masked(self.flow, node.save_as, value)
        self.session = self.session.evolve(trail=self.session.trail[:-1]).visited(
            Visit(name, shown, "matched")
        )
        self.note(EventName.INPUT, node=name, value=shown, by="keypad" if digits else "speech")
        if node.save_as:
            self.session = self.session.evolve(
                variables={**self.session.variables, node.save_as: value}
            )
        self.session = self.session.evolve(waiting=None)
        return self.run(self.back_to_checkpoint() or target)

    def retry(
        self,
        name: str,
        node: Node,
        kind: Literal["no_input", "no_match"],
        heard: str | None = None,
    ) -> Turn:
        defaults = getattr(self.flow.spec.defaults, kind)
        spec: RetrySpec = getattr(node, kind) or defaults or DEFAULT_RETRY
        count = getattr(self.session, f"{kind}_count") + 1
        secret = node.save_as is not None and sensitive.covers(
            self.flow.spec.sensitive, node.save_as
        )
        tried = attempts.counted(self.session.attempts, name, kind, heard, secret)
        self.session = self.session.evolve(**{f"{kind}_count": count}, attempts=tried)
        self.note(EventName(kind), node=name, attempt=count)
        assert node.gather is not None
        failed = self.session.no_input_count + self.session.no_match_count
        limit = node.gather.max_attempts
        if count > spec.retries or (limit is not None and failed >= limit):
            what = "no answer" if kind == "no_input" else "no usable answer"
            tries = f"{count} tries" if count > spec.retries else f"{failed} tries in all"
            self.reason = f"{what} at {name} after {tries}"
            if spec.then:
                self.session = self.session.evolve(waiting=None)
                return self.run(spec.then)
            return self.give_up(kind)
        reprompt: Prompt = self.message(
            kind, NO_INPUT_TEXT if kind == "no_input" else NO_MATCH_TEXT
        )
        if spec.reprompts:
            reprompt = spec.reprompts[min(count, len(spec.reprompts)) - 1]
        elif spec.reprompt is not None:
            reprompt = spec.reprompt
        written = spec.reprompts is not None or spec.reprompt is not None
        if node.gather.reprompt_mode == "replace" and written:
            # The reprompt stands in for the question; the default sentence never does.
            self.actions.append(self.gather(node.gather, self.parts(reprompt), ask=False))
        else:
            self.actions.append(self.gather(node.gather, self.parts(reprompt)))
        return self.turn()

    def fetched(self, result: FetchResult) -> Turn:
        name = self.session.node or ""
        node = self.flow.node(name)
        self.session = self.session.evolve(waiting=None)
        if not result.ok:
            self.note(EventName.HTTP_ERROR, node=name, error=result.error)
            failure = {"status": result.status, "error": result.error}
            self.session = self.session.evolve(
                variables={**self.session.variables, "http_error": failure}
            )
            if node.on_error:
                return self.run(node.on_error)
            return self.give_up("http_error")
        if node.http and node.http.save_as:
            variables = {**self.session.variables, node.http.save_as: result.data}
            self.session = self.session.evolve(variables=variables)
        if back := self.back_to_checkpoint():
            return self.run(back)
        following = self.finish(name, node)
        return following if isinstance(following, Turn) else self.run(following)

    # ---- resumed callers ------------------------------------------------------------------
    def back_to_checkpoint(self) -> str | None:
        """Once a resumed caller has given their sensitive data again, return to the checkpoint."""
        session = self.session
        missing = session.resume_missing
        if not (session.resume_return and missing):
            return None
        if not all(sensitive.has(session.variables, path) for path in missing):
            return None
        self.session = session.evolve(resume_return=None, resume_missing=())
        self.note(EventName.SENSITIVE_RECOLLECTED, checkpoint=session.resume_return)
        return session.resume_return

    def verification_passed(self) -> str | None:
        """At a ``verified: true`` node: restore held sensitive data, return to the checkpoint."""
        session = self.session
        if not session.held or not session.resume_return:
            return None
        self.session = session.evolve(
            variables=sensitive.put(session.variables, session.held), held={}, resume_return=None
        )
        self.note(EventName.CALLER_VERIFIED, checkpoint=session.resume_return)
        return session.resume_return

    # ---- helpers --------------------------------------------------------------------------
    def variables(self) -> dict[str, Any]:
        session = self.session
        sent = messages.scope(session) if session.messages else messages.NOTHING_SENT
        if session.node and "." in session.node:  # a block's node: its parameters too
            return {**self.base_variables(sent), "params": self.params()}
        return self.base_variables(sent)

    def params(self) -> Any:
        """The parameters of the block use the current node belongs to."""
        entered = self.session.variables.get(blocks.PARAMS_VARIABLE)
        use = blocks.instance(self.session.node or "")
        return entered.get(use, {}) if isinstance(entered, dict) and use else {}

    def base_variables(self, sent: dict[str, Any]) -> dict[str, Any]:
        session = self.session
        return {
            **sent,  # sms, email: a flow's own variable of that name comes first
            "pages": session.pages,
            **session.variables,
            **self.known,
            **self.clock,
            "caller": self.session.caller,
            "env": self.env,
            "attempts": attempts.Tries(self.flow.spec.nodes, self.session.attempts),
        }

    def text(self, source: str) -> str:
        if templates.is_static(source):
            return source
        return templates.render(self.flow.template(source), self.variables(), self.template_failed)

    def agent_text(self, source: str) -> str:
        """``source`` rendered for agents (a reason, label, whisper): sensitive values show as
        :data:`~ivr.sensitive.MASK`, however short (masking the text afterwards cannot tell a
        three-digit code from any other three digits)."""
        if templates.is_static(source):
            return source
        paths = tuple(self.flow.spec.sensitive)
        shown = {
            key: sensitive.masked(paths, key, value) for key, value in self.variables().items()
        }
        return templates.render(self.flow.template(source), shown, self.template_failed)

    def url(self, source: str) -> str:
        """A data dip's URL: its values encoded as path segments or query values."""
        if templates.is_static(source):
            return source
        return templates.render(
            self.flow.url_template(source), self.variables(), self.template_failed
        )

    def template_failed(self, reason: str) -> None:
        self.note(EventName.TEMPLATE_FAILED, node=self.session.node, error=reason)

    def voice(self) -> tuple[str | None, str | None]:
        """The call's voice and language: ``set`` during the call, else the flow's, rendered."""
        chosen = self.session.variables
        if self.fixed_voice is not None and "voice" not in chosen and "language" not in chosen:
            return self.fixed_voice
        return languages.speaking(self.flow, self.variables())

    def message(self, name: languages.MessageName, default: str) -> str:
        """A built-in prompt in the flow's wording for the call's language (``messages:``)."""
        if self.flow.spec.messages is None:
            return default
        return languages.message(self.flow, name, default, self.voice()[1], self.variables())

    def parts(self, prompt: Prompt | None) -> tuple[Speech, ...]:
        if prompt is None:
            return ()
        items = prompt if isinstance(prompt, list) else [prompt]
        voice, language = self.voice()
        out: list[Speech] = []
        for item in items:
            if isinstance(item, str):
                out.append(Say(self.text(item), voice, language, 1, _personal(item)))
            elif isinstance(item, SayPart):
                out.append(
                    Say(
                        self.text(item.say),
                        (self.text(item.voice) or voice) if item.voice else voice,
                        (self.text(item.language) or language) if item.language else language,
                        item.loop,
                        _personal(item.say),
                    )
                )
            elif isinstance(item, PlayPart):
                out.append(Play(self.text(item.play), item.loop, _personal(item.play)))
            elif isinstance(item, PausePart):
                out.append(Pause(max(1, round(item.pause))))
        return tuple(p for p in out if not isinstance(p, Say) or p.text)

    def speak(self, prompt: Prompt | None) -> None:
        self.actions.extend(self.parts(prompt))

    def gather(self, spec: GatherSpec, lead: tuple[Speech, ...], ask: bool = True) -> Gather:
        speech_timeout = spec.speech_timeout
        return Gather(
            prompt=lead + self.parts(spec.prompt) if ask else lead,
            input=tuple(spec.input),
            num_digits=spec.num_digits,
            finish_on_key=spec.finish_on_key,
            timeout=round(spec.timeout),
            speech_timeout=speech_timeout
            if isinstance(speech_timeout, str) or speech_timeout is None
            else str(round(speech_timeout)),
            hints=tuple(spec.hints),
            language=(self.text(spec.language) if spec.language else None) or self.voice()[1],
        )

    def assign(self, values: dict[str, Any]) -> None:
        variables = dict(self.session.variables)
        for key, value in values.items():
            # Each value sees the ones set before it (and every built-in variable).
            self.session = self.session.evolve(variables=variables)
            found = self.value(value, self.variables())
            # A moment (now) is kept as its ISO text: sessions hold plain JSON values.
            variables = {**variables, key: str(found) if isinstance(found, hours.Moment) else found}
        self.session = self.session.evolve(variables=variables)

    def value(self, value: Any, scope: dict[str, Any]) -> Any:
        if not isinstance(value, str) or templates.is_static(value):
            return value
        expression = templates.single_expression(value)
        if expression is not None:
            return templates.evaluate(self.flow.expression(expression), scope)
        return templates.render(self.flow.template(value), scope, self.template_failed)

    def request(self, node: Node) -> HttpRequest:
        assert node.http is not None
        spec = node.http
        scope = self.variables()
        self.session = self.session.evolve(waiting=Waiting.FETCH)
        return HttpRequest(
            url=self.url(spec.url),
            method=spec.method,
            json=_render_json(self, spec.json_body, scope),
            headers={k: self.text(v) for k, v in spec.headers.items()},
            timeout=spec.timeout,
            form=_render_form(self, spec.form, scope) if spec.form is not None else None,
        )


def _render_json(runner: _Runner, value: Any, scope: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _render_json(runner, v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_json(runner, v, scope) for v in value]
    return runner.value(value, scope)


def _render_form(runner: _Runner, form: Mapping[str, Any], scope: dict[str, Any]) -> dict[str, str]:
    """A form's fields as text: ``true``/``false`` for booleans, empty for nothing."""
    fields = {}
    for name, raw in form.items():
        value = runner.value(raw, scope)
        if isinstance(value, bool):
            value = "true" if value else "false"
        fields[name] = "" if value is None else str(value)
    return fields


def _personal(source: str) -> bool:
    """Text rendered from a template may carry this caller's data."""
    return not templates.is_static(source)


def _lookup(variables: Mapping[str, Any], dotted: str) -> Any:
    current: Any = variables
    for part in dotted.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        else:
            return None
    return current


def _names_any(prompt: Prompt, names: list[str]) -> bool:
    """Whether a spoken part of ``prompt`` mentions one of ``names`` (``queue.position``)."""
    items = prompt if isinstance(prompt, list) else [prompt]
    texts = [item if isinstance(item, str) else getattr(item, "say", "") for item in items]
    return any(name in text for text in texts for name in names)


def _route(spec: TransferSpec) -> tuple[Literal["queue", "number", "client", "sip"], str]:
    if spec.queue is not None:
        return "queue", spec.queue
    if spec.number is not None:
        return "number", spec.number
    if spec.client is not None:
        return "client", spec.client
    assert spec.sip is not None  # the schema requires exactly one target
    return "sip", spec.sip


def _masked(flow: Flow, save_as: str | None, value: str | None) -> str | None:
    """Answers saved into sensitive variables are not copied into the trail."""
    if save_as and sensitive.covers(flow.spec.sensitive, save_as):
        return sensitive.MASK
    return value
