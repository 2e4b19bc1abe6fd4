"""Pages behind signed links, as the pure engine sees them: what a page shows, and what a
submission does to the session.

A flow's ``pages:`` are channel-neutral: :func:`view` turns a page and the caller's session into
a :class:`PageView` (a title, paragraphs, choices, fields, a submit label and the page's state)
that a web template renders today and an SMS prompt could render later. :func:`opened` records
the first opening of a link; :func:`submit` checks a form (required, type, pattern, length, a
choice among those offered) and either rejects it with a sentence per field or saves the values
in the variable ``save_as`` (default: the page's id), the chosen item's ``label`` beside them,
and what is known in ``session.pages[page]`` (values masked where the flow calls them
sensitive). Events name fields, never what was typed into a rejected form.

A second identical submission changes nothing. A different one replaces the first while the
flow has not used it; once the call went on with it (the engine marks it ``used`` when a
``wait_for`` goes to ``on_submit``), the page says it was received already, unless the flow
waits for the page again (the caller asked to pick another). :func:`renewal` answers an expired link's "text me a new link" (a text carrying a fresh link)
and "call me back" (a call-back request), each at most once per link.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ivr import links, messages, sensitive, templates
from ivr.flow import Flow
from ivr.schema import PageFieldSpec, PageSpec
from ivr.session import Session
from ivr.states import EventName, Waiting
from ivr.turn import Effect, Note, PageLink, RequestCallback, SendMessage

OPENED = "opened"
SUBMITTED = "submitted"
LINKS_KEPT = 10  # link ids a page's entry remembers
TYPED_KEPT = 4000  # characters of a typed value shown back on a rejected form
FALLBACK_TEXT = "Part of this page could not be shown. You can still answer below."
DONE_TEXT = "Thank you, we have your answer."
USED_TEXT = (
    "We already received your answer and have used it. If you need to change it, please call us."
)
RENEW_BODY = "Here is a new link for {title}: {link}"
RENEW_REASON = "asked for a call back from an expired page link"

CallState = Literal["redirected", "ended", "failed", "none"]
CALL_SENTENCES: dict[str, str] = {
    "redirected": "We're telling you on the phone now.",
    "ended": "We'll pick this up next time you call.",
    "failed": "Thanks, we've got it. We'll pick this up next time you call.",
    "none": "Thanks, we've got it.",
}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+?[0-9 ().\-]+")


@dataclass(frozen=True)
class FieldView:
    """One input of a page's form as shown: its current value and, after a check, its error."""

    name: str
    label: str
    type: str
    required: bool
    hint: str | None
    value: str
    max_length: int
    error: str | None = None


@dataclass(frozen=True)
class PageView:
    """What a page shows, in no channel's terms.

    ``state`` is ``open`` (nothing submitted yet), ``submitted`` (an answer is in, and may
    still be changed while ``can_change``) or ``used`` (the flow went on with it: no form any
    more). ``call`` is a
    sentence about the live call once something was submitted.
    """

    page: str
    title: str
    paragraphs: tuple[str, ...]
    choice_field: str | None
    choices: tuple[tuple[str, str], ...]
    chosen: str | None
    choices_empty: str | None
    fields: tuple[FieldView, ...]
    submit: str
    state: Literal["open", "submitted", "used"]
    can_change: bool = True  # the form is still offered (nothing was used yet)
    done: str | None = None
    call: str | None = None
    errors: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  # template errors, for the designer's log


@dataclass(frozen=True)
class Submitted:
    """A submission that passed: the session to save, its events, and the values saved.

    No notes means it was the same submission again (nothing to save)."""

    session: Session
    notes: tuple[Note, ...]
    values: dict[str, str]


@dataclass(frozen=True)
class Rejected:
    """A submission that failed the page's checks: a sentence per field, and what was typed."""

    errors: dict[str, str]
    values: dict[str, str]
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True)
class AlreadyUsed:
    """A different submission after the flow went on with the first one: nothing changes."""

    values: dict[str, str]


# ---- view ---------------------------------------------------------------------------------
def view(
    flow: Flow,
    session: Session,
    page_id: str,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    env: Mapping[str, Any] | None = None,
    fresh: bool = False,
) -> PageView:
    """What ``page_id`` shows to the caller of ``session``: rendered with the session's
    variables; ``values`` and ``errors`` re-show a rejected form; ``fresh`` is the answer to
    the submission just made (it says what the call does with it, even if the call already
    went on). ``KeyError`` if the flow has no such page."""
    spec = flow.spec.pages[page_id]
    scope = _scope(session, env)
    problems: list[str] = []
    entry = _entry(session, page_id)
    state: Literal["open", "submitted", "used"] = "open"
    taken = used(session, page_id) and not waits_for(flow, session, page_id)
    if entry.get("status") == SUBMITTED:
        state = "used" if taken and not fresh else "submitted"
    shown = (
        dict(values)
        if values is not None
        else _saved_values(session, spec, page_id, flow.spec.sensitive)
    )
    title = _text(flow, spec.title, scope, problems) or spec.title
    paragraphs: tuple[str, ...] = ()
    if spec.content:
        content = _text(flow, spec.content, scope, problems)
        if not content and problems:
            content = FALLBACK_TEXT
        paragraphs = tuple(p.strip() for p in re.split(r"\n\s*\n", content) if p.strip())
    choices = offered(flow, session, page_id, env, problems)
    done = None
    call = None
    if state != "open":
        done = (_text(flow, spec.done, scope, problems) if spec.done else "") or DONE_TEXT
        if state == "used":
            done = USED_TEXT
        call = CALL_SENTENCES.get(str(entry.get("call") or ""))
    fields = tuple(
        FieldView(
            name,
            item.label,
            item.type,
            item.required,
            item.hint,
            shown.get(name, "")[:TYPED_KEPT],
            item.max_length,
            (errors or {}).get(name),
        )
        for name, item in spec.fields.items()
    )
    return PageView(
        page=page_id,
        title=title,
        paragraphs=paragraphs,
        choice_field=spec.choices.field if spec.choices else None,
        choices=choices,
        chosen=shown.get(spec.choices.field) if spec.choices else None,
        choices_empty=spec.choices.empty if spec.choices else None,
        fields=fields,
        submit=spec.submit,
        state=state,
        can_change=not taken,
        done=done,
        call=call,
        errors=dict(errors or {}),
        problems=tuple(problems),
    )


def offered(
    flow: Flow,
    session: Session,
    page_id: str,
    env: Mapping[str, Any] | None = None,
    problems: list[str] | None = None,
) -> tuple[tuple[str, str], ...]:
    """The ``(value, label)`` pairs a page's choices offer now (each item of the list its
    ``items`` names, rendered as ``item``); an item whose value renders empty is left out."""
    spec = flow.spec.pages[page_id].choices
    if spec is None:
        return ()
    items = _lookup(_scope(session, env), spec.items)
    if isinstance(items, Mapping) or not isinstance(items, list | tuple):
        return ()
    scope = _scope(session, env)
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    sink = problems if problems is not None else []
    for item in items:
        one = {**scope, "item": item}
        value = _text(flow, spec.value, one, sink)
        label = _text(flow, spec.label, one, sink) or value
        if value and value not in seen:
            seen.add(value)
            found.append((value, label))
    return tuple(found)


def title(flow: Flow, session: Session, page_id: str, env: Mapping[str, Any] | None = None) -> str:
    """The title of ``page_id`` on one line, rendered with the session's variables, for a text
    or an email subject that carries its link (the page's own title, if it fails to render)."""
    spec = flow.spec.pages[page_id]
    rendered = _text(flow, spec.title, _scope(session, env), []) or spec.title
    return " ".join(rendered.split())


# ---- opening and submitting ---------------------------------------------------------------
def opened(
    flow: Flow, session: Session, page_id: str, link_id: str, at: float
) -> tuple[Session, Note] | None:
    """The session once ``link_id`` to ``page_id`` was opened, with its ``page_opened`` event;
    ``None`` when this link was opened before (a reload records nothing)."""
    entry = _entry(session, page_id)
    known = list(entry.get("links") or [])
    if link_id in known:
        return None
    changed = {
        **entry,
        "status": entry.get("status") or OPENED,
        "links": [*known, link_id][-LINKS_KEPT:],
        "opened_at": entry.get("opened_at") or at,
    }
    note = Note(EventName.PAGE_OPENED, {"page": page_id, "link": link_id})
    return _with_entry(session, page_id, changed), note


def submit(
    flow: Flow,
    session: Session,
    page_id: str,
    form: Mapping[str, str],
    link_id: str,
    at: float,
    env: Mapping[str, Any] | None = None,
) -> Submitted | Rejected | AlreadyUsed:
    """Check ``form`` against ``page_id`` and, if it passes, save its values in the session."""
    spec = flow.spec.pages[page_id]
    typed = _typed(spec, form)
    values = dict(typed)
    if spec.choices is not None and typed.get(spec.choices.field):
        labels = dict(offered(flow, session, page_id, env))
        values[_label_key(spec)] = labels.get(typed[spec.choices.field], "")
    target = spec.save_as or page_id
    entry = _entry(session, page_id)
    taken = used(session, page_id) and not waits_for(flow, session, page_id)
    if entry.get("status") == SUBMITTED and (taken or not used(session, page_id)):
        if session.variables.get(target) == values:
            return Submitted(session, (), values)  # the same submission again
        if taken:
            return AlreadyUsed(typed)  # nothing to check: the answer was taken already
    errors = check(flow, session, page_id, typed, env)
    if errors:
        note = Note(
            EventName.PAGE_REJECTED, {"page": page_id, "link": link_id, "fields": sorted(errors)}
        )
        return Rejected(errors, typed, (note,))
    paths = tuple(flow.spec.sensitive)
    shown = sensitive.masked(paths, target, values)
    changed = {
        **entry,
        "status": SUBMITTED,
        "values": shown,
        "at": at,
        "link": link_id,
        "links": list(dict.fromkeys([*(entry.get("links") or []), link_id]))[-LINKS_KEPT:],
        "step": session.step,
        "changed": entry.get("status") == SUBMITTED,
    }
    for stale in ("call", "redirected_step", "used"):
        changed.pop(stale, None)
    if "call" in entry and entry.get("redirected_step") == session.step:
        changed["call"] = entry["call"]  # the call was told already: it reads the new values
        changed["redirected_step"] = entry["redirected_step"]
    variables = {**session.variables, target: values}
    note = Note(
        EventName.PAGE_SUBMITTED,
        {
            "page": page_id,
            "link": link_id,
            "fields": sorted(values),
            "values": shown,
            "changed": changed["changed"],
        },
    )
    saved = _with_entry(session.evolve(variables=variables), page_id, changed)
    return Submitted(saved, (note,), values)


def check(
    flow: Flow,
    session: Session,
    page_id: str,
    typed: Mapping[str, str],
    env: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """A sentence per field of ``typed`` that fails ``page_id``'s checks (empty: it passes)."""
    spec = flow.spec.pages[page_id]
    errors: dict[str, str] = {}
    if spec.choices is not None:
        picked = typed.get(spec.choices.field, "")
        offers = offered(flow, session, page_id, env)
        if not picked:
            if spec.choices.required and offers:
                errors[spec.choices.field] = "Please pick one of the options."
        elif picked not in dict(offers):
            errors[spec.choices.field] = (
                "That option is not available any more; please pick one of those shown."
            )
    for name, item in spec.fields.items():
        problem = _field_problem(item, typed.get(name, ""))
        if problem is not None:
            errors[name] = problem
    return errors


def used(session: Session, page_id: str) -> bool:
    """Whether the flow went on with the page's submission: the engine marks it ``used`` when
    a ``wait_for`` goes to ``on_submit`` with it (a later wait needs a new one)."""
    entry = _entry(session, page_id)
    return entry.get("status") == SUBMITTED and bool(entry.get("used"))


def waits_for(flow: Flow, session: Session, page_id: str) -> bool:
    """Whether the session waits at a ``wait_for`` node for ``page_id`` right now."""
    if session.waiting != Waiting.PAGE or session.node is None:
        return False
    node = flow.spec.nodes.get(session.node)
    return node is not None and node.wait_for is not None and node.wait_for.page == page_id


def call_told(
    session: Session,
    page_id: str,
    state: CallState,
    step: int,
    detail: str | None = None,
) -> tuple[Session, Note | None]:
    """The session once the live call was told of the submission (``redirected``), or could
    not be (``ended``, ``failed``), or there was no live call (``none``); the
    ``call_redirected`` event when it was redirected (to the answer URL of ``step``)."""
    entry = _entry(session, page_id)
    changed = {**entry, "call": state}
    note = None
    if state == "redirected":
        changed["redirected_step"] = step
        note = Note(
            EventName.CALL_REDIRECTED,
            {"page": page_id, "call_sid": session.call_sid, "step": step},
        )
    elif detail:
        changed["call_error"] = detail[:200]
    return _with_entry(session, page_id, changed), note


def should_redirect(flow: Flow, session: Session, page_id: str, terminal: frozenset[str]) -> bool:
    """Whether a submission should move the live call on now: the session waits for this page
    and its call has not ended, and the call was not already redirected at this step."""
    if not waits_for(flow, session, page_id) or session.call_status in terminal:
        return False
    entry = _entry(session, page_id)
    return not (entry.get("call") == "redirected" and entry.get("redirected_step") == session.step)


# ---- an expired link ----------------------------------------------------------------------
Renewal = Literal["sms", "callback"]


def renewal(
    flow: Flow,
    session: Session,
    page_id: str,
    old_link: str,
    kind: Renewal,
    at: float,
    env: Mapping[str, Any] | None = None,
) -> tuple[Session, tuple[Effect, ...]] | None:
    """The session and effects for an expired link's "text me a new link" (a text with a new
    link, to the caller's number) or "call me back" (a call-back request); ``None`` when this
    link already asked for it, or a text cannot go anywhere (no number)."""
    entry = _entry(session, page_id)
    renewals = dict(entry.get("renewals") or {})
    asked = dict(renewals.get(old_link) or {})
    if kind in asked:
        return None
    number = session.caller if session.caller.startswith("+") else None
    asked[kind] = at
    renewals[old_link] = asked
    changed = _with_entry(session, page_id, {**entry, "renewals": renewals})
    if kind == "callback":
        return changed, (RequestCallback(number, RENEW_REASON),)
    if number is None:
        return None
    spec: PageSpec = flow.spec.pages[page_id]
    node = f"renew:{old_link}"
    new_link = links.link_id(session.call_sid, session.step, node, page_id)
    message = SendMessage(
        key=messages.message_key(session.call_sid, session.step, node, "sms"),
        channel="sms",
        to=number,
        body=RENEW_BODY.format(title=title(flow, session, page_id, env), link=links.mark(new_link)),
        node=node,
        links=(PageLink(new_link, page_id, int(spec.expires)),),
    )
    return messages.queued(changed, message, at), (message,)


def renewals_asked(session: Session, page_id: str, link_id: str) -> frozenset[str]:
    """What an expired ``link_id`` already asked for (``sms``, ``callback``)."""
    asked = (_entry(session, page_id).get("renewals") or {}).get(link_id) or {}
    return frozenset(asked)


# ---- pieces -------------------------------------------------------------------------------
def _field_problem(item: PageFieldSpec, value: str) -> str | None:
    """What is wrong with ``value`` for the field ``item`` (``None``: nothing)."""
    label = item.label.rstrip(":").strip()
    if not value:
        return f"Please fill in {label}." if item.required else None
    wrong = item.error
    if len(value) > item.max_length:
        return f"{label} can be at most {item.max_length} characters long."
    if item.min_length is not None and len(value) < item.min_length:
        return wrong or f"{label} must be at least {item.min_length} characters long."
    kind = item.type
    if kind == "email" and not _EMAIL.fullmatch(value):
        return wrong or "Please enter an email address such as name@example.com."
    if kind == "tel" and not _phone_like(value):
        return wrong or "Please enter a phone number, with its country code if abroad."
    if kind == "number" and not _number_like(value):
        return wrong or f"{label} must be a number."
    if kind == "date" and not _date_like(value):
        return wrong or "Please enter a date as year-month-day, such as 2026-12-24."
    if item.pattern is not None:
        try:
            matched = re.fullmatch(item.pattern, value) is not None
        except re.error:
            matched = True  # a pattern that does not compile checks nothing
        if not matched:
            return wrong or f"{label} is not in the expected form."
    return None


def _phone_like(value: str) -> bool:
    digits = sum(ch.isdigit() for ch in value)
    return bool(_PHONE.fullmatch(value)) and 6 <= digits <= 15 and "+" not in value[1:]


def _number_like(value: str) -> bool:
    try:
        number = float(value.replace(",", "")) if re.fullmatch(r"[0-9.,+\-eE]+", value) else None
    except ValueError:
        return False
    return number is not None and math.isfinite(number)


def _date_like(value: str) -> bool:
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        return False
    return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", value))


def _typed(spec: PageSpec, form: Mapping[str, str]) -> dict[str, str]:
    """The page's own fields from a posted form, trimmed (other keys are dropped)."""
    names = list(spec.fields)
    if spec.choices is not None:
        names.insert(0, spec.choices.field)
    typed = {}
    for name in names:
        raw = form.get(name)
        text = raw if isinstance(raw, str) else ""
        typed[name] = text.replace("\r\n", "\n").replace("\r", "\n").strip()[:TYPED_KEPT]
    return typed


def _label_key(spec: PageSpec) -> str:
    choice = spec.choices.field if spec.choices else "choice"
    return f"{choice}_label" if "label" in spec.fields else "label"


def _saved_values(
    session: Session, spec: PageSpec, page_id: str, secret: Sequence[str] = ()
) -> dict[str, str]:
    """The values of the last submission, to fill the form with (what the flow holds), but
    those the flow calls sensitive: a page is shown to whoever holds its link."""
    target = spec.save_as or page_id
    saved = session.variables.get(target)
    if not isinstance(saved, Mapping):
        return {}
    return {
        str(k): v
        for k, v in saved.items()
        if isinstance(v, str) and not sensitive.covers(secret, f"{target}.{k}")
    }


def _scope(session: Session, env: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        **session.variables,
        "caller": session.caller,
        "env": dict(env or {}),
        "pages": session.pages,
        "sms": messages.latest(session, "sms") or {},
        "email": messages.latest(session, "email") or {},
    }


def _text(flow: Flow, source: str, scope: Mapping[str, Any], problems: list[str]) -> str:
    if templates.is_static(source):
        return source.strip()
    try:
        template = flow.template(source)
    except ValueError as exc:
        problems.append(str(exc)[:200])
        return ""
    return templates.render(template, scope, problems.append)


def _lookup(scope: Mapping[str, Any], path: str) -> Any:
    found: Any = scope
    for part in path.split("."):
        if isinstance(found, Mapping) and part in found:
            found = found[part]
        elif isinstance(found, list | tuple) and part.isdigit() and int(part) < len(found):
            found = found[int(part)]
        else:
            return None
    return found


def _entry(session: Session, page_id: str) -> dict[str, Any]:
    entry = session.pages.get(page_id)
    return dict(entry) if isinstance(entry, Mapping) else {}


def _with_entry(session: Session, page_id: str, entry: dict[str, Any]) -> Session:
    return session.evolve(pages={**session.pages, page_id: entry})
