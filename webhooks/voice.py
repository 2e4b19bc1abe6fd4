"""The voice webhooks Twilio calls: ``/voice``, ``/voice/answer`` and ``/voice/status``.

Views only parse, delegate to :class:`~webhooks.calls.CallService` and render; any failure becomes
a spoken apology and a route to a person (``FALLBACK_NUMBER`` / ``FALLBACK_QUEUE``), never a 500.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, current_app, request
from werkzeug.exceptions import HTTPException

from ivr.errors import OmnivoiceError, StoreUnavailable
from webhooks import metrics, twiml
from webhooks.calls import INCOMING_STEP, MAX_STEP, CallService
from webhooks.params import CallParams
from webhooks.signature import twilio_signed

log = logging.getLogger("omnivoice.voice")

bp = Blueprint("voice", __name__, url_prefix="/voice")

NO_FLOW = "Sorry, this number is not in service right now."


def _service() -> CallService:
    service: CallService = current_app.extensions["omnivoice.calls"]
    return service


def _params() -> CallParams:
    params = CallParams.parse(request.form, current_app.config["DEFAULT_REGION"])
    if not params.call_sid:
        # Twilio always sends a CallSid; without one there is no call to keep state for.
        abort(Response("Bad request: CallSid is missing.\n", 400, mimetype="text/plain"))
    return params


def _xml(body: str) -> Response:
    return Response(body, 200, mimetype="text/xml")


def _fallback(reason: str = twiml.APOLOGY) -> Response:
    config = current_app.config
    return _xml(twiml.fallback(config.get("FALLBACK_NUMBER"), config.get("FALLBACK_QUEUE"), reason))


@bp.post("")
@twilio_signed
def incoming() -> Response:
    """A call arrived: run the flow for the called number (``To``), else the default flow."""
    reply = _service().incoming(_params())
    return _xml(reply) if reply is not None else _fallback(NO_FLOW)


@bp.post("/answer")
@twilio_signed
def answer() -> Response:
    """What the caller keyed or said (or nothing) in reply to the gather asked at ``step``."""
    step = request.args.get("step", type=int)
    if step is not None and not INCOMING_STEP <= step <= MAX_STEP:
        # Only answer URLs this server wrote are signed, and they never name such a step.
        abort(Response("Bad request: step out of range.\n", 400, mimetype="text/plain"))
    params = _params()
    service = _service()
    reply = service.incoming(params) if step is None else service.answer(params, step)
    return _xml(reply) if reply is not None else _fallback(NO_FLOW)


@bp.post("/status")
@twilio_signed
def status() -> Response:
    """Twilio's status callback: record how the call ended."""
    _service().status(_params())
    return Response(status=204)


@bp.errorhandler(Exception)
def _any_failure(exc: Exception) -> Response | HTTPException:
    """Nothing reaches the caller as an error page: they hear an apology and reach a person."""
    if isinstance(exc, HTTPException):
        return exc
    metrics.ERRORS.labels(kind=type(exc).__name__).inc()
    if isinstance(exc, StoreUnavailable):
        log.error("session store unavailable on %s: %s", request.path, exc)
    elif isinstance(exc, OmnivoiceError):
        log.error("failure on %s: %s", request.path, exc)
    else:
        log.exception("unexpected failure on %s", request.path)
    if request.path.endswith("/status"):
        return Response(status=204)  # Twilio ignores the body; the failure is in the log
    return _fallback()
