"""The voice webhooks Twilio calls: ``/voice``, ``/voice/answer`` and ``/voice/status``.

:class:`VoiceWebhooks` serves them straight from WSGI, in front of the Flask app that serves
everything else (health, metrics, the demo back-end). A webhook is dead air for the caller, and
Flask's per-request machinery (contexts, routing, hooks, request and response objects) cost more
than the flow engine's whole step; these three endpoints need none of it. Views only parse,
check the signature, delegate to :class:`~conversation.service.ConversationService` and render; any failure
becomes a spoken apology and a route to a person (``FALLBACK_NUMBER`` / ``FALLBACK_QUEUE``),
never a 500.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from conversation.inbound import Inbound
from conversation.service import INCOMING_STEP, MAX_STEP, ConversationService
from ivr.errors import OmnivoiceError, StoreUnavailable
from webhooks import metrics, twiml
from webhooks.params import parse_call
from webhooks.request import BodyTooLarge, WebhookRequest, read
from webhooks.signature import is_signed

log = logging.getLogger("omnivoice.voice")
signature_log = logging.getLogger("webhooks.signature")

NO_FLOW = "Sorry, this number is not in service right now."
ANSWER_PATH = "/voice/answer"

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class VoiceSettings:
    """What the voice webhooks need from the app's configuration."""

    auth_token: str | None
    dev_mode: bool = False
    public_base_url: str | None = None
    default_region: str = "US"
    fallback_number: str | None = None
    fallback_queue: str | None = None

    @functools.cached_property
    def base_path(self) -> str | None:
        """The path of ``PUBLIC_BASE_URL``: what Twilio must put before our own paths."""
        if not self.public_base_url:
            return None
        return urlsplit(self.public_base_url).path.rstrip("/")


@dataclass(frozen=True)
class Reply:
    """A webhook's HTTP answer."""

    status: int
    body: bytes = b""
    content_type: str = "text/xml; charset=utf-8"
    extra_headers: tuple[tuple[str, str], ...] = ()


class BadRequest(Exception):
    """A request Twilio would never send: answered with a 4xx and its reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class VoiceWebhooks:
    """A WSGI app serving the voice webhooks and passing every other path to ``other``."""

    def __init__(
        self,
        other: WsgiApp,
        service: ConversationService,
        settings: VoiceSettings,
        before: Callable[[], None] = lambda: None,
    ) -> None:
        self.other = other
        self.service = service
        self.settings = settings
        self.before = before  # runs before each webhook (the flow catalog's reload check)
        self.routes: dict[str, tuple[str, Callable[[WebhookRequest], Reply]]] = {
            "/voice": ("voice.incoming", self.incoming),
            ANSWER_PATH: ("voice.answer", self.answer),
            "/voice/status": ("voice.status", self.status),
        }
        self._timers = {
            endpoint: metrics.WEBHOOK_SECONDS.labels(endpoint=endpoint)
            for endpoint, _ in self.routes.values()
        }

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        route = self.routes.get(environ.get("PATH_INFO", ""))
        if route is None:
            return self.other(environ, start_response)
        started = time.perf_counter()
        endpoint, view = route
        reply = self.serve(environ, view)
        self._timers[endpoint].observe(time.perf_counter() - started)
        headers = [
            ("Content-Type", reply.content_type),
            ("Content-Length", str(len(reply.body))),
            *reply.extra_headers,
        ]
        start_response(f"{reply.status} {HTTPStatus(reply.status).phrase}", headers)
        return [reply.body]

    def serve(self, environ: dict[str, Any], view: Callable[[WebhookRequest], Reply]) -> Reply:
        """Read, check and answer one webhook; nothing escapes as an error page."""
        path = str(environ.get("PATH_INFO", ""))
        try:
            if str(environ.get("REQUEST_METHOD", "")).upper() != "POST":
                return _text(
                    405, "Method not allowed: Twilio's webhooks are POSTs.", ("Allow", "POST")
                )
            request = read(environ, self.settings.public_base_url)
            refusal = self.refusal(request)
            if refusal is not None:
                return refusal
            self.before()
            return view(request)
        except BadRequest as exc:
            return _text(exc.status, f"Bad request: {exc.reason}.")
        except BodyTooLarge as exc:
            return _text(413, f"Request too large: {exc}.")
        except Exception as exc:
            return self.failed(path, exc)

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
            return _text(403, "Forbidden: this server has no Twilio auth token.")
        if not is_signed(request, settings.auth_token):
            signature_log.warning(
                "rejected %s: missing or invalid X-Twilio-Signature", request.path
            )
            return _text(403, "Forbidden: invalid Twilio signature.")
        return None

    # ---- the webhooks -----------------------------------------------------------------------
    def incoming(self, request: WebhookRequest) -> Reply:
        """A call arrived: run the flow for the called number (``To``), else the default flow."""
        reply = self.service.incoming(self.params(request))
        return _xml(reply) if reply is not None else self.fallback(NO_FLOW)

    def answer(self, request: WebhookRequest) -> Reply:
        """What the caller keyed or said (or nothing) in reply to the gather asked at ``step``."""
        step = _step(request.arg("step"))
        if step is not None and not INCOMING_STEP <= step <= MAX_STEP:
            # Only answer URLs this server wrote are signed, and they never name such a step.
            raise BadRequest(400, "step out of range")
        params = self.params(request)
        service = self.service
        reply = service.incoming(params) if step is None else service.answer(params, step)
        return _xml(reply) if reply is not None else self.fallback(NO_FLOW)

    def status(self, request: WebhookRequest) -> Reply:
        """Twilio's status callback: record how the call ended."""
        self.service.status(self.params(request))
        return Reply(204, content_type="text/plain; charset=utf-8")

    # ---- pieces -------------------------------------------------------------------------------
    def params(self, request: WebhookRequest) -> Inbound:
        root = self.settings.base_path
        if root is None:
            root = request.script_root
        params = parse_call(request.fields(), self.settings.default_region, root)
        if not params.contact_id:
            # Twilio always sends a CallSid; without one there is no call to keep state for.
            raise BadRequest(400, "CallSid is missing")
        return params

    def fallback(self, reason: str = twiml.APOLOGY) -> Reply:
        settings = self.settings
        return _xml(twiml.fallback(settings.fallback_number, settings.fallback_queue, reason))

    def failed(self, path: str, exc: Exception) -> Reply:
        """The caller hears an apology and reaches a person; the failure is in the log."""
        metrics.ERRORS.labels(kind=type(exc).__name__).inc()
        if isinstance(exc, StoreUnavailable):
            log.error("session store unavailable on %s: %s", path, exc)
        elif isinstance(exc, OmnivoiceError):
            log.error("failure on %s: %s", path, exc)
        else:
            log.exception("unexpected failure on %s", path)
        if path.endswith("/status"):
            return Reply(204, content_type="text/plain; charset=utf-8")  # Twilio ignores it
        return self.fallback()


def _step(raw: str | None) -> int | None:
    """The ``step`` query parameter as a number; anything else is no step at all."""
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _xml(body: str) -> Reply:
    return Reply(200, body.encode("utf-8"))


def _text(status: int, message: str, *headers: tuple[str, str]) -> Reply:
    return Reply(status, f"{message}\n".encode(), "text/plain; charset=utf-8", headers)
