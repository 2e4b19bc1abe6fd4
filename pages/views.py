"""The page views: ``GET``/``POST /p/<token>`` and an expired link's ``POST /p/<token>/renew``.

Thin: check the token (:class:`~context.links.LinkStore`), call :class:`~pages.service.PageService`,
render a Jinja template (autoescaped). A token that does not verify answers 403, an expired one
410 with the offer of a new link or a call back; Redis down answers a friendly 503, never a 500.
The signed token in the URL is the capability (nobody can post to a page without it), so the
form needs no nonce; answers are never cached and never leak the URL as a referrer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for

from context.links import LinkExpired, LinkRecord, LinkStore, LinkTampered
from ivr.errors import StoreError
from pages.service import Notice, PageService, Shown

log = logging.getLogger("omnivoice.pages")

bp = Blueprint("pages", __name__, template_folder="templates")
MAX_FORM_BYTES = 64 * 1024  # a page's form is a few short fields

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


@bp.after_request
def _guard(response: Response) -> Response:
    response.headers.update(_HEADERS)
    return response


@bp.get("/p/<token>")
def page(token: str) -> Response:
    """A page, as its link opens it."""
    return _answer(token, lambda record: _service().show(record))


@bp.post("/p/<token>")
def submit(token: str) -> Response:
    """A page's form, posted."""
    if (request.content_length or 0) > MAX_FORM_BYTES:
        return _notice(Notice("too_big", 413), token)
    form = {key: request.form.get(key, "") for key in request.form}
    return _answer(token, lambda record: _service().submit(record, form, _root()))


@bp.post("/p/<token>/renew")
def renew(token: str) -> Response:
    """An expired link asks for a new link by text, or for a call back."""
    kind = request.form.get("what", "")
    if kind not in ("sms", "callback"):
        return _notice(Notice("renew_refused", 400), token)
    try:
        _links().open(token)
    except LinkTampered:
        return _notice(Notice("tampered", 403), token)
    except LinkExpired as exc:
        if exc.record is None:
            return _notice(Notice("expired", 410), token)
        try:
            notice = _service().renew(exc.record, kind)  # type: ignore[arg-type]
        except StoreError as err:
            return _unavailable(token, err)
        return _notice(notice, token)
    except StoreError as err:
        return _unavailable(token, err)
    return redirect(url_for("pages.page", token=token), 303)  # type: ignore[return-value]


# ---- pieces -------------------------------------------------------------------------------
def _answer(token: str, act: Callable[[LinkRecord], Shown | Notice]) -> Response:
    try:
        record = _links().open(token)
    except LinkTampered:
        return _notice(Notice("tampered", 403), token)
    except LinkExpired as exc:
        return _notice(Notice("expired", 410, exc.record), token)
    except StoreError as err:
        return _unavailable(token, err)
    try:
        shown = act(record)
    except StoreError as err:
        return _unavailable(token, err)
    if isinstance(shown, Notice):
        return _notice(shown, token)
    for problem in shown.view.problems:
        log.warning("page %s of %s: template failed: %s", record.page, record.flow, problem)
    html = render_template("pages/page.html", view=shown.view, token=token)
    return Response(html, shown.status, mimetype="text/html")


def _notice(notice: Notice, token: str) -> Response:
    record: LinkRecord | None = notice.record
    can_text = record is not None and record.caller.startswith("+")
    html = render_template(
        "pages/notice.html",
        kind=notice.kind,
        token=token,
        offers=notice.kind == "expired" and record is not None,
        can_text=can_text,
    )
    response = Response(html, notice.status, mimetype="text/html")
    if notice.status == 503:
        response.headers["Retry-After"] = "10"
    return response


def _unavailable(token: str, err: Exception) -> Response:
    log.error("page link could not be served: %s", err)
    return _notice(Notice("unavailable", 503), token)


def _root() -> str:
    return str(current_app.config.get("PUBLIC_BASE_URL") or request.url_root).rstrip("/")


def _links() -> LinkStore:
    links: LinkStore = current_app.extensions["omnivoice.links"]
    return links


def _service() -> PageService:
    service: PageService = current_app.extensions["omnivoice.pages"]
    return service
