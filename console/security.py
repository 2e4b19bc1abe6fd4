"""Who is logged in, the CSRF token, and the headers every console response carries.

A login keeps the agent's name, a fresh random CSRF token and a login id in Flask's signed
session cookie; :func:`start_login` clears whatever the cookie held first, so a session planted
before the login is never the one that is logged in. Every POST must carry the token, in the
form field ``csrf_token`` or the ``X-CSRF-Token`` header (for ``fetch``), compared in constant
time. The ``Authorization`` header is never looked at here: the API's bearer token opens the
API, not the console.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import Response, current_app, g, jsonify, redirect, request, session, url_for

from console.agents import AgentView, directory_of

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)


def csrf_token() -> str:
    """This session's CSRF token, made on first use."""
    token = session.get("csrf")
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok() -> bool:
    """Whether this POST carries the session's CSRF token."""
    expected = session.get("csrf")
    given = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    if not isinstance(expected, str) or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def start_login(agent: AgentView) -> None:
    """Log ``agent`` in on a new session (nothing of the old one survives)."""
    session.clear()
    session.permanent = True
    session["agent"] = agent.name
    session["login"] = secrets.token_urlsafe(16)
    session["csrf"] = secrets.token_urlsafe(32)


def end_login() -> None:
    """Log out: the session is emptied."""
    session.clear()


def wants_json() -> bool:
    """Whether the request came from the page's scripts (fetch or EventSource), not a link."""
    accept = request.accept_mimetypes
    return (
        request.headers.get("X-Requested-With") == "fetch"
        or request.path.endswith("/events")
        or (accept.best == "application/json")
        or "text/event-stream" in (request.headers.get("Accept") or "")
    )


def current_agent() -> AgentView | None:
    """The logged-in agent, ``None`` if there is none (or they were disabled since)."""
    if "agent" in g:
        return g.agent  # type: ignore[no-any-return]
    name = session.get("agent")
    agent = directory_of(current_app).get(name) if isinstance(name, str) else None
    if agent is not None and agent.disabled:
        agent = None
    g.agent = agent
    return agent


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``view`` for a logged-in agent; others go to the login page (scripts get 401)."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if current_agent() is None:
            if wants_json() or request.method != "GET":
                response = jsonify({"error": "log in to the agent console first"})
                response.status_code = 401
                return response
            return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return guarded


def csrf_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse a POST without the session's CSRF token: 400 and nothing done."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if not csrf_ok():
            message = (
                "This form has expired or did not come from the console (its security token is "
                "missing or wrong). Reload the page and try again; nothing was changed."
            )
            if wants_json():
                response = jsonify({"error": message})
                response.status_code = 400
                return response
            return Response(message, 400, mimetype="text/plain")
        return view(*args, **kwargs)

    return guarded


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this site only (never another host)."""
    if not target:
        return url_for("console.board_page")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("console.board_page")
    if "\\" in target:
        return url_for("console.board_page")
    return target


def secure_headers(response: Response) -> Response:
    """The console's security headers: CSP without inline scripts, no framing, no caching."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.mimetype != "text/event-stream":
        response.headers["Cache-Control"] = "no-store"
    return response
