"""The screen-pop's "Send a page": which pages an agent may send a caller, and sending one.

A caller's card offers the pages of the caller's flow (``pages:``) by text or email. A number
that texted STOP is refused texts by :func:`consents.decide`, so its card says so and offers
email only; while the history database cannot say, texts are not offered either. Sending goes
through the conversation service (:func:`conversation.agent_pages.push_page`), so the message is
queued with the caller's session like one the flow sends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from console.actions import ActionRefused, CallRef
from console.agents import AgentView
from context.callers import masked
from context.history import consents
from conversation.agent_pages import PagePush, PageRefused, push_page
from conversation.service import ConversationService
from ivr.catalog import Catalog

log = logging.getLogger("omnivoice.console")

CHANNELS = ("sms", "email")
OPTED_OUT = "This number has opted out of texts (STOP): send the page by email."
UNCHECKED = "Texts cannot be offered: the consent records are unavailable right now."


@dataclass(frozen=True)
class PageOffer:
    """What a card offers: the flow's pages (id, title), and why texts are not offered."""

    pages: tuple[tuple[str, str], ...]
    no_texts: str | None = None  # OPTED_OUT, UNCHECKED, or None: texts are fine


def pages_of(catalog: Catalog, flow_id: str | None) -> tuple[tuple[str, str], ...]:
    """The pages of flow ``flow_id`` (current version), as (id, title)."""
    flow = catalog.get(flow_id) if flow_id else None
    if flow is None:
        return ()
    return tuple((name, page.title) for name, page in flow.spec.pages.items())


def flow_pages(catalog: Catalog) -> dict[str, list[tuple[str, str]]]:
    """Every flow's pages, by flow id (for the cards the board's script draws)."""
    return {
        flow.id: list(pages_of(catalog, flow.id)) for flow in catalog.flows() if flow.spec.pages
    }


def texts_refused(history: Callable[[], sessionmaker[Session]], number: str) -> str | None:
    """Why ``number`` may not be texted (opted out, or unknown for now); ``None``: it may."""
    if not number.startswith("+"):
        return "This caller has no phone number to text."
    try:
        with history()() as db:
            allowed = consents.decide(db, number, "sms", consents.SERVICE).allowed
    except (SQLAlchemyError, OSError) as exc:
        log.warning("consent of %s unavailable: %s", masked(number), type(exc).__name__)
        return UNCHECKED
    return None if allowed else OPTED_OUT


def offer(
    catalog: Catalog, history: Callable[[], sessionmaker[Session]], flow: str | None, caller: str
) -> PageOffer:
    """What the card of ``caller``'s call on ``flow`` offers."""
    pages = pages_of(catalog, flow)
    return PageOffer(pages, texts_refused(history, caller) if pages else None)


def send(
    service: ConversationService,
    history: Callable[[], sessionmaker[Session]],
    ref: CallRef,
    agent: AgentView,
    form: dict[str, str],
) -> str:
    """Send the page the form names; what to tell the agent.

    Raises:
        ActionRefused: an unknown channel or page, an opted-out number, no address, no session.
    """
    page = (form.get("page") or "").strip()
    channel = (form.get("channel") or "").strip()
    if channel not in CHANNELS:
        raise ActionRefused(400, "Choose how to send the page: sms or email.")
    if not page:
        raise ActionRefused(400, "Choose a page to send.")
    if channel == "sms" and (why := texts_refused(history, ref.caller)):
        raise ActionRefused(409, why)
    push = PagePush(
        caller=ref.caller,
        call_sid=ref.call_sid,
        agent=agent.name,
        page=page,
        channel="sms" if channel == "sms" else "email",
        email=(form.get("email") or "").strip() or None,
        flow=ref.flow,
    )
    try:
        message = push_page(service, push)
    except PageRefused as refused:
        raise ActionRefused(refused.status, refused.message) from None
    where = masked(message.to) if channel == "sms" else message.to
    return f"The page is on its way by {'text' if channel == 'sms' else 'email'} to {where}."
