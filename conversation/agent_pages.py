"""An agent sends the caller one of their flow's pages, by text or email, during the call.

The console calls :func:`push_page`; it goes through :meth:`ConversationService.amend`, so the
message is part of the caller's session like one a flow sends: its idempotency key and its
link are derived from the call, the session's step, the agent's action (``agent:<name>``, the
message's node) and the page, it is marked queued in ``session.messages``, and the service
records it as a ``message_queued`` event carrying the sealed job, with ``via: "agent"``, once
the save stood. Pressing Send twice at the same step queues one message. The page must be
one of the flow's ``pages:``; consent (an opted-out number) is the console's to check first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ivr import links, messages, outgoing, pages
from ivr.errors import Refused
from ivr.session import Session
from ivr.turn import Effect, PageLink, SendMessage

if TYPE_CHECKING:
    from conversation.service import ConversationService

MAX_ADDRESS = 320  # characters of an email address (RFC 5321's limits together)
MAX_AGENT = 48  # characters of an agent's name in a node name (ivr.schema.NodeName: 64)


class PageRefused(Refused):
    """The page was not sent; ``message`` is for the agent, ``status`` for HTTP."""


@dataclass(frozen=True)
class PagePush:
    """What the agent asked: which caller (and call), which page, by which channel, to where."""

    caller: str
    call_sid: str
    agent: str
    page: str
    channel: Literal["sms", "email"]
    email: str | None = None  # the address typed, for an email (else the one the flow knows)
    flow: str | None = None  # the call's flow (its session, also when kept aside)


def agent_node(agent: str) -> str:
    """The node an agent's message names: ``agent:<name>`` (how events tell it from a flow's)."""
    return f"agent:{agent[:MAX_AGENT]}"


def push_page(service: ConversationService, push: PagePush) -> SendMessage:
    """Queue the page ``push`` asks for; the message queued (the same one for a second press).

    Raises:
        PageRefused: no session for the call, no such page in its flow, no address to use.
        StoreUnavailable: Redis does not answer.
    """
    made: list[SendMessage] = []
    refusal: list[PageRefused] = []

    def change(session: Session, now: float) -> tuple[Session, Sequence[Effect]] | None:
        made.clear()
        refusal.clear()
        try:
            message = _message(service, session, push)
        except PageRefused as refused:
            refusal.append(refused)
            return None
        made.append(message)
        if message.key in session.messages:
            return None  # queued already: nothing to save, nothing to send again
        return messages.queued(session, message, now), (message,)

    service.amend(push.caller, change, call_sid=push.call_sid, channel=push.channel, flow=push.flow)
    if refusal:
        raise refusal[0]
    if not made:
        raise PageRefused(409, f"Call {push.call_sid} has no conversation to send a page in.")
    return made[0]


def _message(service: ConversationService, session: Session, push: PagePush) -> SendMessage:
    if session.call_sid != push.call_sid:
        raise PageRefused(409, f"Call {push.call_sid} is no longer this caller's conversation.")
    flow = service.versions.for_session(session)
    spec = flow.spec.pages.get(push.page) if flow is not None else None
    if flow is None or spec is None:
        raise PageRefused(400, f"{push.page!r} is not a page of this caller's flow.")
    node = agent_node(push.agent)
    step = session.step
    link = PageLink(
        id=links.link_id(session.call_sid, step, node, push.page),
        page=push.page,
        expires=int(spec.expires),
    )
    url = links.mark(link.id)
    title = pages.title(flow, session, push.page, service.env)
    key = messages.message_key(session.call_sid, step, f"{node}/{push.page}", push.channel)
    if push.channel == "sms":
        if not session.caller.startswith("+"):
            raise PageRefused(409, "This caller has no phone number to text; send an email.")
        body = f"{title}: {url}"
        return SendMessage(key, "sms", session.caller, body, node, links=(link,))
    address = (push.email or _known_email(session) or "").strip()
    if len(address) > MAX_ADDRESS or not outgoing.EMAIL.fullmatch(address):
        why = "is not an email address" if address else "is missing"
        raise PageRefused(400, f"The email address {why}: type the caller's address.")
    body = f"{title}\n\n{url}\n"
    return SendMessage(key, "email", address, body, node, subject=title, links=(link,))


def _known_email(session: Session) -> str | None:
    """The caller's email address, if the flow collected one (``email``)."""
    value = session.variables.get("email")
    return value if isinstance(value, str) else None
