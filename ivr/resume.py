"""Resume: a caller whose call dropped picks up where they left off (pure decisions and turns).

:func:`plan` decides what a new call from a known caller should get; :func:`offer` asks "continue
or start over?"; :func:`answer_offer` applies the reply; :func:`restore` puts the caller back at
their checkpoint with their variables, except sensitive ones when the caller ID is not fully
attested (those wait for the flow's ``verify`` node, or are asked again).

The shell (:mod:`conversation.service`, with :mod:`conversation.resume_codes`) does the I/O: it
loads the previous session, redeems resume codes, and stores what these functions return.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from ivr import answers, engine, history, languages, liveness, sensitive, templates
from ivr.flow import Flow
from ivr.session import Session
from ivr.states import ConcurrentCalls, EventName, PlanKind, Status, Waiting
from ivr.turn import Answer, Gather, Note, Say, Turn

DEFAULT_PROMPT = (
    "Welcome back. Last time you were {{ where }}. To pick up where you left off, press 1 or say "
    "continue. To start over, press 2 or say start over."
)
PLAIN_PROMPT = (  # for a checkpoint without a description: a node's name is never spoken
    "Welcome back. To pick up where you left off, press 1 or say continue. To start over, press "
    "2 or say start over."
)
CODE_PROMPT = (
    "If you have a resume code, enter it now, then press pound. Otherwise, just press pound."
)
CODE_RETRY = "Sorry, that code didn't match."
CODE_ANNOUNCEMENT = (
    "If we get cut off, call back and enter your resume code: {code}. Again, {code}."
)
CONTINUE_KEYS = "1|continue|yes|resume|pick up"
START_OVER_KEYS = "2|start over|restart|new|no"
OFFER_RETRIES = 1
CODE_ATTEMPTS = 3
CODE_LENGTH = 6


@dataclass(frozen=True)
class Plan:
    """What a new call should get, and why (the reason is logged as an event)."""

    kind: PlanKind
    reason: str


def plan(
    flow: Flow,
    previous: Session | None,
    now: float,
    recognised: bool = True,
    call_sid: str | None = None,
) -> Plan:
    """Decide how new call ``call_sid`` on ``flow`` starts, given the caller's previous session.

    While the previous session's call is still live (:func:`ivr.liveness.is_live`), the new
    call starts beside it unless the flow's ``concurrent`` policy is ``takeover``; a call in
    another flow never takes a live call's session.
    """
    policy = flow.spec.resume
    if previous is None:
        if not recognised and policy.codes:
            return Plan(PlanKind.ASK_CODE, "caller ID withheld")
        return Plan(PlanKind.FRESH, "no previous session")
    keeps_apart = previous.flow_id != flow.id or policy.concurrent == ConcurrentCalls.SEPARATE
    if keeps_apart and previous.call_sid != call_sid and liveness.is_live(previous, now):
        return Plan(PlanKind.SEPARATE, "another call from this number is live")
    if previous.flow_id != flow.id:
        return Plan(PlanKind.FRESH, f"previous session was in flow {previous.flow_id}")
    if previous.status == Status.COMPLETED:
        return Plan(PlanKind.FRESH, "previous call completed")
    age = now - (previous.ended_at or previous.updated_at)
    if policy.within <= 0 or age > policy.within:
        return Plan(PlanKind.FRESH, f"resume window expired ({age:.0f}s > {policy.within:.0f}s)")
    if previous.status == Status.TRANSFERRED:
        if policy.transferred:
            return Plan(PlanKind.TRANSFERRED, "caller was transferred")
        return Plan(PlanKind.FRESH, "caller was transferred")
    if previous.checkpoint is None or previous.checkpoint not in flow.spec.nodes:
        return Plan(PlanKind.FRESH, "no checkpoint to resume at")
    live = previous.status == Status.ACTIVE
    reason = "superseded a live call" if live else "call was interrupted"
    return Plan(PlanKind.OFFER if policy.ask else PlanKind.CONTINUE, reason)


def where(flow: Flow, node: str) -> str | None:
    """How the welcome-back prompt names a checkpoint: its description (a template), if any.

    A node's name is for designers (``get_account``); a caller never hears it.
    """
    spec = flow.spec.nodes.get(node)
    return spec.description if spec is not None and spec.description else None


def carried_over(
    flow: Flow, previous: Session, call_sid: str, at: float, attested: bool
) -> Session:
    """The previous session, handed to a new call: active again, counters reset.

    Unless the new call is fully attested, the flow's sensitive variables are moved aside into
    ``held`` before anything is said, so no prompt, description or transfer can reveal them to a
    caller who may be spoofing the number; an attested caller gets held values back.
    """
    variables: dict[str, Any] = dict(previous.variables)
    held = dict(previous.held)
    if attested:
        variables, held = sensitive.put(variables, held), {}
    else:
        variables, taken = sensitive.take(flow.spec.sensitive, variables)
        held.update(taken)
    return previous.evolve(
        variables=variables,
        held=held,
        resume_return=None,
        resume_missing=(),
        call_sid=call_sid,
        status=Status.ACTIVE,
        ended_reason=None,
        call_status=None,
        ended_at=None,
        attested=attested,
        no_input_count=0,
        no_match_count=0,
        updated_at=at,
        # Who is calling is known again for this call: by its number (resume by caller ID needs
        # one), attested or not; verification is per call and must be passed again.
        identified=("caller_id", "stir_a") if attested else ("caller_id",),
        resumes=previous.resumes + 1,
    )


def offer(flow: Flow, session: Session, env: Mapping[str, Any] | None = None) -> Turn:
    """Ask a returning caller whether to continue at their checkpoint or start over."""
    checkpoint = session.checkpoint or flow.spec.start
    scope: dict[str, Any] = {
        **session.variables,
        **history.scope(session.card, session.call_sid, session.updated_at),
        "caller": session.caller,
        "env": env or {},
    }
    described = where(flow, checkpoint)
    place = templates.render(flow.template(described), scope).strip() if described else ""
    scope["where"] = place  # empty without a description: a custom prompt can test it
    text = flow.spec.resume.prompt or (DEFAULT_PROMPT if place else PLAIN_PROMPT)
    speaking = languages.speaking(flow, scope)  # the language the caller chose last time
    spoken = languages.message(flow, "welcome_back", text, speaking[1], scope)
    session = session.evolve(node=checkpoint, waiting=Waiting.RESUME_OFFER)
    return Turn(
        session,
        (_offer_gather(spoken, speaking),),
        (Note(EventName.RESUME_OFFERED, {"checkpoint": checkpoint}),),
    )


def _offer_gather(
    spoken: str, speaking: tuple[str | None, str | None], lead: str | None = None
) -> Gather:
    voice, language = speaking
    prompt = tuple(Say(t, voice, language, 1, t is spoken) for t in (lead, spoken) if t)
    return Gather(
        prompt=prompt,
        input=("dtmf", "speech"),
        num_digits=1,
        hints=("continue", "start over"),
        language=language,
    )


def answer_offer(
    flow: Flow, session: Session, event: Answer, env: Mapping[str, Any] | None = None
) -> Turn:
    """Continue or start over, by what the caller keyed or said."""
    choice = answers.route(
        {CONTINUE_KEYS: "continue", START_OVER_KEYS: "start_over"}, event.digits, event.speech
    )
    if choice is None and session.no_match_count + session.no_input_count < OFFER_RETRIES:
        kind: Literal["no_input", "no_match"] = (
            "no_input" if not (event.digits or event.speech) else "no_match"
        )
        session = session.evolve(**{f"{kind}_count": getattr(session, f"{kind}_count") + 1})
        retry = offer(flow, session, env)
        default = engine.NO_INPUT_TEXT if kind == "no_input" else engine.NO_MATCH_TEXT
        voice, language = languages.speaking(flow, session.variables)
        lead = languages.message(flow, kind, default, language, session.variables)
        gather = retry.actions[0]
        assert isinstance(gather, Gather)
        said = Say(lead, voice, language)
        return Turn(retry.session, (replace(gather, prompt=(said, *gather.prompt)),))
    if choice == "start_over":
        fresh = engine.start(
            flow, caller=session.caller, call_sid=session.call_sid, at=event.at, env=env,
            card=session.card,
        )  # fmt: skip
        fresh_session = fresh.session.evolve(
            attested=session.attested, step=session.step, conversation=session.conversation
        )
        return fresh.evolve(session=fresh_session).noting(
            Note(EventName.RESUME_DECLINED), first=True
        )
    return restore(flow, session, at=event.at, env=env)


def restore(flow: Flow, session: Session, at: float, env: Mapping[str, Any] | None = None) -> Turn:
    """Put the caller back at their checkpoint; sensitive variables only if they can be trusted."""
    checkpoint = session.checkpoint or flow.spec.start
    notes = [Note(EventName.RESUMED, {"checkpoint": checkpoint, "attested": session.attested})]
    node = checkpoint
    if session.held:  # see carried_over: sensitive values of a caller who is not attested
        withheld = [path for path in flow.spec.sensitive if path in session.held]
        withheld += sorted(set(session.held) - set(withheld))
        notes.append(Note(EventName.SENSITIVE_WITHHELD, {"variables": withheld}))
        verify = flow.spec.resume.verify
        if verify:
            session = session.evolve(resume_return=checkpoint)
            node = verify
        else:
            collector = _collector(flow, withheld[0])
            session = session.evolve(
                held={},
                resume_return=checkpoint if collector else None,
                resume_missing=tuple(withheld) if collector else (),
            )
            node = collector or checkpoint
    turn = engine.start(
        flow, caller=session.caller, call_sid=session.call_sid, at=at, env=env,
        node=node, session=session,
    )  # fmt: skip
    return turn.noting(*notes, first=True)


def transferred_route(
    flow: Flow, session: Session, at: float, env: Mapping[str, Any] | None = None
) -> Turn:
    """Send a caller who was with an agent straight back to the flow's ``transferred`` node."""
    node = flow.spec.resume.transferred or flow.spec.start
    turn = engine.start(
        flow, caller=session.caller, call_sid=session.call_sid, at=at, env=env,
        node=node, session=session,
    )  # fmt: skip
    return turn.noting(Note(EventName.TRANSFERRED_CALLER_BACK), first=True)


def _collector(flow: Flow, path: str) -> str | None:
    """The node that collects the variable of ``path`` (a gather or http node that saves it)."""
    variable = path.split(".", 1)[0]
    for name, node in flow.spec.nodes.items():
        if node.save_as == variable or (node.http and node.http.save_as == variable):
            return name
    return None


# ---- resume codes for callers without caller ID ------------------------------------------
def ask_code(flow: Flow, session: Session, retry: bool = False) -> Turn:
    """Ask a caller without caller ID for a resume code (pound to skip)."""
    scope = session.variables
    voice, language = languages.speaking(flow, scope)
    texts = [languages.message(flow, "resume_code_question", CODE_PROMPT, language, scope)]
    if retry:
        texts.insert(0, languages.message(flow, "resume_code_retry", CODE_RETRY, language, scope))
    prompt = tuple(Say(t, voice, language) for t in texts)
    gather = Gather(prompt=prompt, num_digits=CODE_LENGTH, finish_on_key="#", timeout=6)
    return Turn(session.evolve(waiting=Waiting.RESUME_CODE, node=None), (gather,))


def spoken_code(code: str) -> str:
    """A code read out digit by digit, in two groups: "1 2 3, 4 5 6"."""
    half = len(code) // 2
    return f"{' '.join(code[:half])}, {' '.join(code[half:])}"


def announce_code(flow: Flow, code: str, variables: Mapping[str, Any] | None = None) -> Say:
    """The line that gives the caller their resume code (``{{ code }}`` in a flow's wording)."""
    spoken = spoken_code(code)
    scope = {**(variables or {}), "code": spoken}
    voice, language = languages.speaking(flow, scope)
    default = CODE_ANNOUNCEMENT.format(code=spoken)
    text = languages.message(flow, "resume_code_announcement", default, language, scope)
    return Say(text, voice, language, personal=True)


def is_code(digits: str | None) -> bool:
    """True when ``digits`` has the shape of a resume code."""
    return digits is not None and len(digits) == CODE_LENGTH and digits.isdigit()
