"""The console's pages and endpoints under ``/agent``: thin, as every view is.

Each parses the request, checks the login (and the CSRF token of a POST), calls the directory,
the login limits, the feed or :class:`~console.actions.AgentActions`, and renders. Pages answer
a missing login with a redirect to the login page; the page's scripts (``fetch``, the event
stream) get 401. Every answer carries the console's security headers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy.exc import SQLAlchemyError

from console import board, live, send_page
from console.actions import DISPOSITIONS, MAX_NOTE, ActionRefused, AgentActions, CallRef, call_ref
from console.agents import AgentView, directory_of
from console.history import ConsoleHistory
from console.login_limits import LoginLimits
from console.security import (
    csrf_ok,
    csrf_required,
    csrf_token,
    current_agent,
    end_login,
    login_required,
    safe_next,
    secure_headers,
    start_login,
    wants_json,
)
from context.agent_feed import AgentFeed, FeedEntry
from context.redis_errors import STORE_UNAVAILABLE, describe
from ivr.errors import StoreUnavailable

log = logging.getLogger("omnivoice.console")

UNAVAILABLE: tuple[type[Exception], ...] = (StoreUnavailable, *STORE_UNAVAILABLE)

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/agent",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
bp.after_request(secure_headers)

WRONG_LOGIN = "That name and password do not match an active agent."


@bp.app_template_global()
def csrf_field_value() -> str:
    """The CSRF token for the hidden field of a form."""
    return csrf_token()


@bp.app_template_filter("duration")
def duration(seconds: Any) -> str:
    """``seconds`` as ``1h 02m``, ``3m 05s`` or ``42s``."""
    try:
        total = max(0, int(float(seconds)))
    except (TypeError, ValueError):
        return ""
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


@bp.app_template_filter("when")
def when(at: Any) -> str:
    """An epoch time (or ISO text) as ``HH:MM:SS`` UTC."""
    if isinstance(at, int | float):
        return time.strftime("%H:%M:%S", time.gmtime(at))
    return str(at or "")[:19].replace("T", " ")


@bp.app_template_filter("brief")
def brief(data: Any) -> str:
    """An event's data in a few words for a timeline line (``: key value, ...``)."""
    if not isinstance(data, dict):
        return ""
    shown = [
        f"{key} {value}"
        for key, value in data.items()
        if key not in ("handoff_id", "bundle") and isinstance(value, str | int | float)
    ]
    return (": " + ", ".join(shown))[:300] if shown else ""


def _feed() -> AgentFeed:
    return current_app.extensions["omnivoice.feed"]  # type: ignore[no-any-return]


def _actions() -> AgentActions:
    return current_app.extensions["omnivoice.console.actions"]  # type: ignore[no-any-return]


def _history() -> ConsoleHistory:
    return ConsoleHistory(current_app.extensions["omnivoice.console.history"])


def _now() -> float:
    clock = current_app.config.get("CLOCK") or time.time
    return float(clock())


def _agent() -> AgentView:
    agent = current_agent()
    assert agent is not None  # login_required ran first
    return agent


# ---- login -------------------------------------------------------------------------------
@bp.get("/login")
def login() -> Response:
    """The login form."""
    return _login_page()


def _login_page(error: str | None = None, status: int = 200, **headers: str) -> Response:
    page = render_template(
        "console/login.html", error=error, next=request.args.get("next", ""), token=csrf_token()
    )
    return Response(page, status, headers=headers)


@bp.post("/login")
def login_post() -> Response:
    """Check a name and password, within the failed-login limits, and log the agent in."""
    if not csrf_ok():
        return _login_page("The login form had expired; please try again.", 400)
    name = (request.form.get("name") or "").strip()[:64]
    password = request.form.get("password") or ""
    address = request.remote_addr or "unknown"
    limits: LoginLimits = current_app.extensions["omnivoice.console.limits"]
    now = _now()
    try:
        verdict = limits.attempt(name, address, now)
        if not verdict.allowed:
            minutes = max(1, round(verdict.retry_after / 60))
            message = (
                "Too many failed logins for this name or from this address. Wait about "
                f"{minutes} minute(s), then try again."
            )
            return _login_page(message, 429, **{"Retry-After": str(verdict.retry_after)})
        agent = directory_of(current_app).authenticate(name, password)
        if agent is None:
            log.info("failed console login for %r from %s", name, address)
            return _login_page(WRONG_LOGIN, 401)
        limits.succeeded(name, address, now)
    except STORE_UNAVAILABLE as exc:
        log.error("console login refused: Redis did not answer: %s", describe(exc))
        return _login_page("Logins are unavailable for a moment; please try again.", 503)
    except SQLAlchemyError as exc:
        log.error("console login refused: the database did not answer: %s", exc)
        return _login_page("Logins are unavailable for a moment; please try again.", 503)
    start_login(agent)
    log.info("agent %s logged in from %s", agent.name, address)
    return redirect(safe_next(request.form.get("next")))  # type: ignore[return-value]


@bp.post("/logout")
@csrf_required
def logout() -> Response:
    """Log out and go back to the login page."""
    end_login()
    return redirect(url_for("console.login"))  # type: ignore[return-value]


# ---- the board ---------------------------------------------------------------------------
@bp.get("", strict_slashes=False)
@login_required
def board_page() -> Response:
    """The live board: waiting and recently transferred callers, the strip, the callbacks."""
    now = _now()
    feed = _feed()
    problem = None
    try:
        before = feed.last_id()
        entries = feed.since(board.WINDOW_SECONDS, now, count=5000)
        last_id = live.newer(entries[-1].id, before) if entries else before
        entries = _with_handoffs(entries)
    except UNAVAILABLE as exc:
        log.error("the board could not read the agents' feed: %s", describe(exc))
        entries, last_id = [], ""
        problem = "The live feed is unavailable right now; the board will fill in once it is back."
    cards = board.ordered(board.fold(entries))
    history = _history()
    timelines = {
        card.call_sid: history.timeline(
            card.call_sid, (card.bundle.get("caller") or {}).get("customer")
        )
        for card in cards
    }
    catalog = current_app.extensions["omnivoice.catalog"]
    histories = current_app.extensions["omnivoice.console.history"]
    page_offers = {
        card.call_sid: send_page.offer(catalog, histories, card.flow, card.caller)
        for card in cards
        if card.state != board.ENDED
    }
    page = render_template(
        "console/board.html",
        agent=_agent(),
        cards=cards,
        timelines=timelines,
        page_offers=page_offers,
        flow_pages=send_page.flow_pages(catalog),
        strip=board.strip(cards, now),
        callbacks=history.open_callbacks(),
        last_id=last_id,
        now=now,
        problem=problem,
        dispositions=DISPOSITIONS,
        max_note=MAX_NOTE,
        token=csrf_token(),
    )
    return Response(page)


@bp.get("/events")
@login_required
def events() -> Response:
    """The live stream of the agents' feed (Server-Sent Events)."""
    start = live.start_id(request.headers.get("Last-Event-ID"), request.args.get("last_id"))
    heartbeat = float(current_app.config["CONSOLE_HEARTBEAT_SECONDS"])
    body = live.stream(_feed(), start, heartbeat, allowed=_still_active(_agent().name))
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def _with_handoffs(entries: list[FeedEntry]) -> list[FeedEntry]:
    """``entries``, with the handoffs of calls they show but whose handoff came before them.

    Raises:
        StoreUnavailable: Redis did not answer.
    """
    missing = board.unopened(entries)
    if not missing:
        return entries
    handoffs = current_app.extensions["omnivoice.handoffs"]
    return board.reopened(handoffs.for_calls(missing), entries)


def _still_active(name: str) -> Callable[[], bool]:
    """Whether agent ``name`` is still there and not disabled (asked by an open stream, which
    outlives its request; a database that does not answer does not cut every console)."""
    directory = directory_of(current_app)

    def active() -> bool:
        try:
            agent = directory.get(name)
        except SQLAlchemyError as exc:
            log.warning("could not recheck agent %s for their stream: %s", name, exc)
            return True
        return agent is not None and not agent.disabled

    return active


# ---- actions -----------------------------------------------------------------------------
def _ref(call_sid: str) -> tuple[CallRef, board.Card | None]:
    """The call ``call_sid`` as its handoff describes it, and its card on the board (if any).

    Raises:
        ActionRefused: not a call handed over to agents, or Redis did not answer.
    """
    if not call_sid.startswith("CA") or len(call_sid) > 64:
        raise ActionRefused(404, f"{call_sid!r} is not a call on the board.")
    try:
        handoff = current_app.extensions["omnivoice.handoffs"].for_call(call_sid)
        entries = _feed().since(board.WINDOW_SECONDS, _now(), count=5000)
        own = _with_handoffs([e for e in entries if e.event.get("call_sid") == call_sid])
    except UNAVAILABLE as exc:
        raise ActionRefused(503, f"The call store is unavailable right now ({exc}).") from None
    card = board.fold(own).get(call_sid)
    return call_ref(call_sid, handoff, card.caller if card else None), card


def _answer(message: str, status: int = 200, **extra: Any) -> Response:
    """A fetch gets JSON; a plain form post goes back to the board with a message."""
    if wants_json():
        response = jsonify({"message": message, **extra})
        response.status_code = status
        return response
    flash(message, "error" if status >= 400 else "info")
    return redirect(url_for("console.board_page"))  # type: ignore[return-value]


@bp.post("/calls/<call_sid>/take")
@login_required
@csrf_required
def take(call_sid: str) -> Response:
    """Put the waiting caller through to the agent who pressed Take call."""
    agent = _agent()
    try:
        ref, card = _ref(call_sid)
        if card is not None and not card.waiting:
            who = f" by {card.taken_by}" if card.taken_by else ""
            raise ActionRefused(409, f"This caller is no longer waiting ({card.state}{who}).")
        to = _actions().take(ref, agent, request.host_url)
    except ActionRefused as refused:
        return _answer(refused.message, refused.status)
    except UNAVAILABLE as exc:
        return _answer(f"The call store is unavailable right now ({exc}).", 503)
    return _answer(f"Connecting the caller to you at {to}.", 200, to=to)


@bp.post("/calls/<call_sid>/notes")
@login_required
@csrf_required
def notes(call_sid: str) -> Response:
    """Record a note and disposition on a call."""
    try:
        _actions().note(
            _ref(call_sid)[0],
            _agent(),
            request.form.get("text") or "",
            request.form.get("disposition") or None,
        )
    except ActionRefused as refused:
        return _answer(refused.message, refused.status)
    return _answer("Note saved.")


@bp.post("/calls/<call_sid>/page")
@login_required
@csrf_required
def push_page(call_sid: str) -> Response:
    """Send the caller one of their flow's pages, by text or email."""
    try:
        ref, _ = _ref(call_sid)
        said = send_page.send(
            current_app.extensions["omnivoice.calls"],
            current_app.extensions["omnivoice.console.history"],
            ref,
            _agent(),
            request.form.to_dict(),
        )
    except ActionRefused as refused:
        return _answer(refused.message, refused.status)
    except UNAVAILABLE as exc:
        return _answer(f"The call store is unavailable right now ({exc}).", 503)
    return _answer(said)


@bp.post("/callbacks/<int:callback_id>/done")
@login_required
@csrf_required
def callback_done(callback_id: int) -> Response:
    """Mark an open callback request done."""
    try:
        done = _history().callback_done(callback_id, _agent().name)
    except SQLAlchemyError as exc:
        log.error("could not mark callback %d done: %s", callback_id, exc)
        return _answer("The history database is unavailable; the callback is still open.", 503)
    if not done:
        return _answer(f"Callback request {callback_id} is not open (done already?).", 404)
    return _answer(f"Callback request {callback_id} marked done.")
