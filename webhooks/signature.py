"""Twilio request validation: every Twilio-facing view is wrapped in :func:`twilio_signed`.

The signature covers the exact public URL Twilio requested, so behind a proxy or tunnel the URL is
rebuilt from ``PUBLIC_BASE_URL`` (or from proxy headers when ``TRUST_PROXY`` enables werkzeug's
ProxyFix). Only the explicit dev mode skips the check, and it says so on every request.
"""

from __future__ import annotations

import base64
import functools
import hmac
import logging
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from flask import Response, current_app, request
from twilio.request_validator import RequestValidator, get_signature_algorithm
from werkzeug.datastructures import MultiDict

log = logging.getLogger(__name__)

View = TypeVar("View", bound=Callable[..., Any])


def public_url() -> str:
    """The URL Twilio requested, as Twilio saw it (percent-escapes exactly as sent)."""
    target = _request_target()
    base = current_app.config.get("PUBLIC_BASE_URL")
    if base:
        root = request.script_root
        if root and target.startswith(root):
            target = target[len(root) :]
        return base.rstrip("/") + target
    return f"{request.scheme}://{request.host}{target}"


def _request_target() -> str:
    """The path and query of the request line, before any decoding."""
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        if raw.startswith(("http://", "https://")):  # absolute-form request target
            parts = urlsplit(raw)
            return parts.path + (f"?{parts.query}" if parts.query else "")
        return str(raw)
    path = quote(
        environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/:@!$&'()*+,;=~"
    )
    query = environ.get("QUERY_STRING")
    return path + (f"?{query}" if query else "")


_DIGESTS = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}


def compute_signature(token: str, url: str, form: MultiDict[str, str], algorithm: str) -> str:
    """Twilio's signature of a form POST: HMAC of the URL followed by each parameter's name and
    value, sorted by name (a repeated name's distinct values sorted too), in base64.

    The same result as ``RequestValidator.compute_signature`` (a test holds them together) at a
    fraction of its cost, on the path every webhook takes.
    """
    digest = _DIGESTS.get(algorithm.upper())
    if digest is None:
        raise ValueError(f"unsupported signature algorithm {algorithm!r}")
    parts = [url]
    for name, values in sorted(form.lists()):
        for value in sorted(set(values)) if len(values) > 1 else values:
            parts.append(name)
            parts.append(value)
    mac = hmac.digest(token.encode("utf-8"), "".join(parts).encode("utf-8"), digest)
    return base64.b64encode(mac).decode("ascii")


def is_signed() -> bool:
    """True when the current request carries a valid ``X-Twilio-Signature``."""
    environ = request.environ  # headers straight from the environ: this runs on every webhook
    token = current_app.config.get("TWILIO_AUTH_TOKEN")
    signature = environ.get("HTTP_X_TWILIO_SIGNATURE")
    if not token or not signature:
        return False
    algorithm = get_signature_algorithm(environ.get("HTTP_X_TWILIO_WEBHOOKS_SIGNATURE_SETTINGS"))
    url = public_url()
    try:
        if _mimetype(environ) != "application/x-www-form-urlencoded":
            # Only a body whose hash is signed (bodySHA256 in the query) can be checked.
            if "bodySHA256" not in request.args:
                return False
            body = request.get_data(as_text=True)
            validator = RequestValidator(token)
            return bool(validator.validate(url, body, signature, algorithm=algorithm))
        form = request.form
        expected = compute_signature(token, url, form, algorithm)
        # The exact URL first (one HMAC); validate() also tries the URL with and without its port.
        if hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            return True
        validator = RequestValidator(token)
        return bool(validator.validate(url, form, signature, algorithm=algorithm))
    except (TypeError, ValueError, UnicodeError):  # odd header bytes, unknown algorithm
        return False


def _mimetype(environ: dict[str, Any]) -> str:
    return str(environ.get("CONTENT_TYPE", "")).partition(";")[0].strip().lower()


def twilio_signed(view: View) -> View:
    """Answer 403 unless the request is signed by Twilio (or the app runs in dev mode)."""

    @functools.wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        config = current_app.config
        if config.get("DEV_MODE"):
            log.warning("DEV MODE: Twilio signature not checked for %s", request.path)
            return view(*args, **kwargs)
        if not config.get("TWILIO_AUTH_TOKEN"):
            log.error(
                "TWILIO_AUTH_TOKEN is not set: refusing %s (set it, or OMNIVOICE_DEV=1)",
                request.path,
            )
            return Response(
                "Forbidden: this server has no Twilio auth token.\n", 403, mimetype="text/plain"
            )
        if not is_signed():
            log.warning("rejected %s: missing or invalid X-Twilio-Signature", request.path)
            return Response("Forbidden: invalid Twilio signature.\n", 403, mimetype="text/plain")
        return view(*args, **kwargs)

    return checked  # type: ignore[return-value]
