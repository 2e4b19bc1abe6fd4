"""The Twilio front: every URL Twilio calls is served here, straight from WSGI, before Flask.

:class:`TwilioFront` is a WSGI app with one request reader (:func:`webhooks.request.read`), one
signature guard (403 for a missing or wrong ``X-Twilio-Signature``; dev mode skips it and says
so loudly) and one route table that channel modules register their :class:`Route`\\ s into
(:mod:`webhooks.voice` registers ``/voice``, ``/voice/answer`` and ``/voice/status``); every other
path goes to ``other``, the Flask app. A webhook is dead air for the caller, and Flask's
per-request machinery (contexts, routing, hooks, request and response objects) cost more than the
flow engine's whole step. Requests Twilio never sends get a plain-text 4xx (405 for other
methods, 413 over 64 KiB or over 256 parameters, before any signature work, whatever a view
raises as :class:`BadRequest`); any other failure is logged and answered with the route's own
``failure`` reply (a spoken apology and a transfer for a call, 204 for a status callback, an
empty messaging ``<Response/>`` for an SMS), never a 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from twilio.twiml.messaging_response import MessagingResponse

from ivr.errors import OmnivoiceError, StoreUnavailable
from webhooks import metrics
from webhooks.request import BodyTooLarge, WebhookRequest, read
from webhooks.signature import is_signed

log = logging.getLogger("omnivoice.front")
signature_log = logging.getLogger("webhooks.signature")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
TWIML = "text/xml; charset=utf-8"
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Reply:
    """A webhook's HTTP answer."""

    status: int
    body: bytes = b""
    content_type: str = TWIML
    extra_headers: tuple[tuple[str, str], ...] = ()


def twiml(body: str) -> Reply:
    """A 200 answer carrying a TwiML document."""
    return Reply(200, body.encode("utf-8"))


def text(status: int, message: str, *headers: tuple[str, str]) -> Reply:
    """A plain-text answer: one sentence and a newline."""
    return Reply(status, f"{message}\n".encode(), TEXT, headers)


NO_CONTENT = Reply(204, content_type=TEXT)
"""What a status callback answers, also on failure: Twilio reads nothing back."""

EMPTY_MESSAGING = twiml(str(MessagingResponse()))
"""What an SMS webhook answers on failure: messaging TwiML that sends no reply."""


class BadRequest(Exception):
    """A request Twilio would never send: answered with a 4xx and its reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


View = Callable[[WebhookRequest], Reply]


@dataclass(frozen=True)
class Route:
    """One Twilio-facing URL: its path, its metrics endpoint name, its view, its failure reply."""

    path: str
    endpoint: str  # e.g. "voice.incoming": the ``endpoint`` label of the webhook timer
    view: View
    failure: Reply  # what the request answers when the view fails
    # The failure reply made for the request (a flow's own apology), when it can be: any error
    # in making it falls back to ``failure``.
    failure_for: View | None = None


@dataclass(frozen=True)
class FrontSettings:
    """What the front needs from the app's configuration."""

    auth_token: str | None
    dev_mode: bool = False
    public_base_url: str | None = None


@dataclass
class _Entry:
    route: Route
    timer: Any = field(repr=False)  # the endpoint's histogram child, resolved once


class TwilioFront:
    """A WSGI app serving the registered Twilio routes and passing every other path to ``other``.

    Args:
        other: the app serving everything else (Flask's ``wsgi_app``).
        settings: the auth token, dev mode and ``PUBLIC_BASE_URL``.
    """

    def __init__(
        self,
        other: WsgiApp,
        settings: FrontSettings,
    ) -> None:
        self.other = other
        self.settings = settings
        self._routes: dict[str, _Entry] = {}

    def register(self, route: Route) -> None:
        """Serve ``route``; raises ``ValueError`` if its path is taken."""
        if route.path in self._routes:
            raise ValueError(f"{route.path} is already served by {self.route(route.path)}")
        timer = metrics.WEBHOOK_SECONDS.labels(endpoint=route.endpoint)
        self._routes[route.path] = _Entry(route, timer)

    def route(self, path: str) -> Route | None:
        """The route registered for ``path`` (without the mount point), if any."""
        entry = self._routes.get(path)
        return entry.route if entry is not None else None

    @property
    def routes(self) -> list[Route]:
        """Every registered route, in registration order."""
        return [entry.route for entry in self._routes.values()]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        entry = self._routes.get(environ.get("PATH_INFO", ""))
        if entry is None:
            return self.other(environ, start_response)
        started = time.perf_counter()
        reply = self.serve(environ, entry.route)
        entry.timer.observe(time.perf_counter() - started)
        headers = [
            ("Content-Type", reply.content_type),
            ("Content-Length", str(len(reply.body))),
            *reply.extra_headers,
        ]
        start_response(_STATUS_LINES.get(reply.status) or _status_line(reply.status), headers)
        return [reply.body]

    def serve(self, environ: dict[str, Any], route: Route) -> Reply:
        """Read, check and answer one webhook; nothing escapes as an error page."""
        request: WebhookRequest | None = None
        try:
            if environ.get("REQUEST_METHOD") != "POST":
                return text(
                    405, "Method not allowed: Twilio's webhooks are POSTs.", ("Allow", "POST")
                )
            request = read(environ, self.settings.public_base_url)
            refusal = self.refusal(request)
            if refusal is not None:
                return refusal
            return route.view(request)
        except BadRequest as exc:
            return text(exc.status, f"Bad request: {exc.reason}.")
        except BodyTooLarge as exc:
            return text(413, f"Request too large: {exc}.")
        except Exception as exc:
            return self.failed(route, exc, request)

    def refusal(self, request: WebhookRequest) -> Reply | None:
        """403 unless the request is signed by Twilio (or the app runs in dev mode)."""
        settings = self.settings
        if settings.dev_mode:
            signature_log.warning("DEV MODE: Twilio signature not checked for %s", request.path)
            return None
        if not settings.auth_token:
            signature_log.error(
                "TWILIO_AUTH_TOKEN is not set: refusing %s (set it, or OMNIVOICE_DEV=1)",
                request.path,
            )
            return text(403, "Forbidden: this server has no Twilio auth token.")
        if not is_signed(request, settings.auth_token):
            signature_log.warning(
                "rejected %s: missing or invalid X-Twilio-Signature", request.path
            )
            return text(403, "Forbidden: invalid Twilio signature.")
        return None

    def failed(self, route: Route, exc: Exception, request: WebhookRequest | None = None) -> Reply:
        """Log and count the failure; the request gets its route's failure reply."""
        metrics.ERRORS.labels(kind=type(exc).__name__).inc()
        if isinstance(exc, StoreUnavailable):
            log.error("session store unavailable on %s: %s", route.path, exc)
        elif isinstance(exc, OmnivoiceError):
            log.error("failure on %s: %s", route.path, exc)
        else:
            log.exception("unexpected failure on %s", route.path)
        if route.failure_for is not None and request is not None:
            try:
                return route.failure_for(request)
            except Exception:  # the flow's own words cannot be had: the built-in ones
                log.exception("the failure reply of %s could not be made", route.path)
        return route.failure


def _status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


_STATUS_LINES = {int(status): _status_line(int(status)) for status in HTTPStatus}
