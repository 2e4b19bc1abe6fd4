"""What a page request does, between the signed link and the HTML: open, submit, renew.

:class:`PageService` checks that a link's record still belongs to the caller's current
conversation and names a page of the session's flow, then changes the **same session** through
:meth:`ConversationService.amend` (opened, submitted, rejected, a renewal asked for), and after
a submission that the live call waits for, redirects the call (:mod:`pages.redirect`) and
records how that went. It returns what to show: a :class:`Shown` page or a :class:`Notice`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from context.links import LinkRecord
from conversation.service import TERMINAL_CALL_STATUSES, ConversationService
from ivr import pages
from ivr.flow import Flow
from ivr.pages import PageView
from ivr.session import Session
from ivr.turn import Effect
from pages.redirect import CallRedirector

NoticeKind = Literal[
    "tampered",
    "other_page",
    "earlier",
    "expired",
    "unavailable",
    "renewed_sms",
    "renewed_callback",
    "renew_refused",
    "too_big",
]


@dataclass(frozen=True)
class Notice:
    """A page that is not the flow's page: why the link cannot be used, or what was done."""

    kind: NoticeKind
    status: int
    record: LinkRecord | None = None


@dataclass(frozen=True)
class Shown:
    """The flow's page to show, with the HTTP status to answer with."""

    view: PageView
    status: int = 200


class _Found:
    """What a change saw of the session (amend calls it again after a lost race)."""

    def __init__(self) -> None:
        self.session: Session | None = None
        self.flow: Flow | None = None
        self.refusal: Notice | None = None
        self.result: Any = None


class PageService:
    """Opens, submits and renews pages on the sessions their links belong to."""

    def __init__(self, calls: ConversationService, redirector: CallRedirector) -> None:
        self.calls = calls
        self.redirector = redirector

    def show(self, record: LinkRecord) -> Shown | Notice:
        """The page of ``record``, recording its first opening through this link."""
        found = _Found()

        def change(session: Session, now: float) -> tuple[Session, tuple[Effect, ...]] | None:
            flow = self._check(record, session, found)
            if flow is None:
                return None
            opened = pages.opened(flow, session, record.page, record.id, now)
            return None if opened is None else (opened[0], (opened[1],))

        saved = self.calls.amend(
            record.caller, change, record.call_sid, channel="web", flow=record.flow
        )
        if found.refusal is not None or found.flow is None or found.session is None:
            return found.refusal or Notice("earlier", 410, record)
        session = saved or found.session
        return Shown(pages.view(found.flow, session, record.page, env=self.calls.env))

    def submit(self, record: LinkRecord, form: Mapping[str, str], root: str) -> Shown | Notice:
        """Check and save a posted form; move the live call on when it waits for this page."""
        if form.get("page", record.page) != record.page:
            return Notice("other_page", 403, record)
        found = _Found()

        def change(session: Session, now: float) -> tuple[Session, tuple[Effect, ...]] | None:
            flow = self._check(record, session, found)
            if flow is None:
                return None
            result = pages.submit(
                flow, session, record.page, form, record.id, now, env=self.calls.env
            )
            found.result = result
            if isinstance(result, pages.Rejected):
                return session, result.notes
            if isinstance(result, pages.Submitted) and result.notes:
                changed = result.session
                if not pages.should_redirect(flow, changed, record.page, TERMINAL_CALL_STATUSES):
                    state: pages.CallState = "none"
                    if changed.call_status in TERMINAL_CALL_STATUSES:
                        state = "ended"
                    if (changed.pages.get(record.page) or {}).get("call") != "redirected":
                        changed, _ = pages.call_told(changed, record.page, state, changed.step)
                return changed, result.notes
            return None

        saved = self.calls.amend(
            record.caller, change, record.call_sid, channel="web", flow=record.flow
        )
        flow, result = found.flow, found.result
        if found.refusal is not None or flow is None or found.session is None:
            return found.refusal or Notice("earlier", 410, record)
        session = saved or found.session
        env = self.calls.env
        if isinstance(result, pages.Rejected):
            view = pages.view(flow, session, record.page, result.values, result.errors, env)
            return Shown(view, 422)
        if isinstance(result, pages.AlreadyUsed):
            return Shown(pages.view(flow, session, record.page, env=env), 409)
        if saved is not None and pages.should_redirect(
            flow, session, record.page, TERMINAL_CALL_STATUSES
        ):  # only the request that saved the submission tells the call (not a double tap)
            session = self._redirect(record, session, root) or session
        return Shown(pages.view(flow, session, record.page, env=env, fresh=True))

    def renew(self, record: LinkRecord, kind: pages.Renewal) -> Notice:
        """An expired link's "text me a new link" or "call me back", once per link."""
        found = _Found()

        def change(session: Session, now: float) -> tuple[Session, tuple[Effect, ...]] | None:
            flow = self._check(record, session, found)
            if flow is None:
                return None
            return pages.renewal(flow, session, record.page, record.id, kind, now, self.calls.env)

        saved = self.calls.amend(
            record.caller, change, record.call_sid, channel="web", flow=record.flow
        )
        if found.refusal is not None:
            return found.refusal
        if saved is None:
            return Notice("renew_refused", 429 if found.session is not None else 410, record)
        return Notice("renewed_sms" if kind == "sms" else "renewed_callback", 200, record)

    # ---- pieces ---------------------------------------------------------------------------
    def _check(self, record: LinkRecord, session: Session, found: _Found) -> Flow | None:
        """The session's flow if ``record`` belongs to this session and names one of its
        pages; otherwise ``None``, with the reason in ``found``."""
        found.session = session
        found.refusal = None
        if session.conversation != record.conversation:
            found.refusal = Notice("earlier", 410, record)
            return None
        flow = self.calls.versions.for_session(session)
        if flow is None or flow.id != record.flow or record.page not in flow.spec.pages:
            found.refusal = Notice("other_page", 403, record)
            return None
        found.flow = flow
        return flow

    def _redirect(self, record: LinkRecord, session: Session, root: str) -> Session | None:
        """Redirect the live call to its answer URL and record how it went."""
        step = session.step
        outcome = self.redirector.redirect(session.call_sid, root, step)
        state: pages.CallState = outcome.state  # type: ignore[assignment]

        def change(current: Session, now: float) -> tuple[Session, tuple[Effect, ...]] | None:
            if current.conversation != record.conversation:
                return None
            told, note = pages.call_told(current, record.page, state, step, outcome.detail)
            return told, (() if note is None else (note,))

        return self.calls.amend(
            record.caller, change, record.call_sid, channel="web", flow=record.flow
        )
