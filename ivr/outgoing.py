"""Texts and emails a node sends (``send_sms``, ``send_email``), made into :class:`SendMessage`.

The bodies are templates with the session's variables and one function more, ``link('page')``:
it renders a mark for a signed link to one of the flow's ``pages:`` (see :mod:`ivr.links`) and
adds the link to the message. ``to`` defaults to the caller's own number for a text; an email
needs an address (``to: "{{ email }}"``). A message that cannot be sent as made (no usable
number or address, an empty body) is not sent at all: :class:`Unsent` says why, and the flow
reads it at once as ``sms.status`` / ``email.status`` ``failed``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import phonenumbers

from ivr import links, messages, templates
from ivr.flow import Flow
from ivr.schema import SendEmailSpec, SendSmsSpec
from ivr.session import Session
from ivr.turn import PageLink, SendMessage

EMAIL = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;.]{2,}$")
MAX_SMS = 1600  # characters Twilio accepts in one message body
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


@dataclass(frozen=True)
class Unsent:
    """A message a node could not send, and why (a sentence for the designer and agents)."""

    key: str
    channel: str
    reason: str


OnError = Callable[[str], None]


def sms(
    flow: Flow,
    session: Session,
    node: str,
    spec: SendSmsSpec,
    scope: Mapping[str, Any],
    on_error: OnError,
) -> SendMessage | Unsent:
    """The text ``node`` sends."""
    key = messages.message_key(session.call_sid, session.step, node, "sms")
    if spec.to:
        number = _e164(_render(flow, spec.to, scope, on_error))
    else:  # the caller's key is their number in E.164 already (or not a number at all)
        number = session.caller if _E164.match(session.caller) else None
    if number is None:
        reason = (
            "the caller's number is withheld"
            if spec.to is None
            else "the number to text is not a phone number"
        )
        return Unsent(key, "sms", reason)
    made: dict[str, PageLink] = {}
    body = _render(flow, spec.body, _linking(flow, session, node, scope, made), on_error)
    if not body:
        return Unsent(key, "sms", "the text's body came out empty")
    if len(body) > MAX_SMS:
        return Unsent(key, "sms", f"the text is longer than {MAX_SMS} characters")
    return SendMessage(key, "sms", number, body, node, links=tuple(made.values()))


def email(
    flow: Flow,
    session: Session,
    node: str,
    spec: SendEmailSpec,
    scope: Mapping[str, Any],
    on_error: OnError,
) -> SendMessage | Unsent:
    """The email ``node`` sends."""
    key = messages.message_key(session.call_sid, session.step, node, "email")
    to = _render(flow, spec.to, scope, on_error)
    if not EMAIL.match(to):
        return Unsent(key, "email", "there is no usable email address to send to")
    made: dict[str, PageLink] = {}
    linking = _linking(flow, session, node, scope, made)
    subject = " ".join(_render(flow, spec.subject, scope, on_error).split())
    body = _render(flow, spec.text, linking, on_error)
    html = _render(flow, spec.html, linking, on_error, html=True) if spec.html else None
    if not body or not subject:
        return Unsent(key, "email", "the email's subject or text came out empty")
    return SendMessage(
        key, "email", to, body, node, subject=subject[:200], html=html or None,
        links=tuple(made.values()),
    )  # fmt: skip


def _linking(
    flow: Flow, session: Session, node: str, scope: Mapping[str, Any], made: dict[str, PageLink]
) -> dict[str, Any]:
    """``scope`` with ``link('page')``, which collects the links it makes into ``made``."""

    def link(page: Any) -> str:
        spec = flow.spec.pages.get(str(page))
        if spec is None:
            raise ValueError(f"there is no page named {str(page)[:64]!r}")
        found = links.link_id(session.call_sid, session.step, node, str(page))
        made[found] = PageLink(found, str(page), round(spec.expires))
        return links.mark(found)

    return {**scope, "link": link}


def _render(
    flow: Flow, source: str, scope: Mapping[str, Any], on_error: OnError, html: bool = False
) -> str:
    if templates.is_static(source):
        return source
    template = flow.html_template(source) if html else flow.template(source)
    return templates.render(template, scope, on_error)


def _e164(text: str) -> str | None:
    """``text`` as an E.164 number, if it is a possible number written in international form."""
    if not text.startswith("+"):
        return None
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
