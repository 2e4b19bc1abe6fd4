"""A Twilio webhook request, read straight from the WSGI environ.

Twilio posts small ``application/x-www-form-urlencoded`` forms. :func:`read` takes what the
webhooks of :mod:`webhooks.front` need (path, mount point, query, every form value, the signature
headers and the URL as Twilio requested it) in one pass, without a framework's request object: on the path every call takes,
that object cost more than the flow engine's whole step.

The form is decoded exactly as :func:`urllib.parse.parse_qsl` with ``keep_blank_values`` decodes
it (a test holds them together), only skipping the unquoting of pieces that have nothing to
unquote. Measured on an inbound voice webhook as Twilio posts it (27 fields with the geo ones,
611 bytes): 12.0 us against parse_qsl's 21.3 us (timeit, best of 7), and 7-9 us less per
``POST /voice`` in the app's own CPU; that is 1.6% of the 0.6 ms of worker CPU such a webhook
costs under gunicorn, over the 1% that would make the standard library's version the better
trade.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

FORM = "application/x-www-form-urlencoded"
MAX_BODY_BYTES = 64 * 1024  # Twilio's voice webhooks are a few hundred bytes
MAX_PARAMETERS = 256
"""Form (or query) parameters a webhook may carry: Twilio sends under 50 (27 on an inbound call
with the geographic fields). Counted before anything is decoded or signed: an unsigned body of
10,000 parameters cost the front 21 ms of CPU to parse and check before its 403; counted, its
413 costs 0.04 ms."""


class BodyTooLarge(ValueError):
    """The request body is over :data:`MAX_BODY_BYTES`."""


class TooManyParameters(BodyTooLarge):
    """The form or the query has more than :data:`MAX_PARAMETERS` parameters."""


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """The parts of a webhook request the Twilio front and its views use."""

    path: str
    root: str  # what Twilio must put before our own paths: PUBLIC_BASE_URL's path, else SCRIPT_NAME
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    content_type: str
    body: bytes
    signature: str | None
    signature_settings: str | None
    url: str  # the URL Twilio requested, as it signed it

    def fields(self) -> dict[str, str]:
        """Each form field's first value."""
        return {name: values[0] for name, values in self.form.items()}

    def arg(self, name: str) -> str | None:
        """The first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else None


def read(environ: dict[str, Any], public_base: str | None = None) -> WebhookRequest:
    """Read a webhook from ``environ``.

    ``public_base`` (``PUBLIC_BASE_URL``) replaces the scheme, host and mount point Twilio's
    request reached the server with, for servers behind a proxy or tunnel.

    Raises:
        BodyTooLarge: the body is over :data:`MAX_BODY_BYTES`.
        TooManyParameters: the form or the query has over :data:`MAX_PARAMETERS` parameters.
    """
    content_type = str(environ.get("CONTENT_TYPE") or "")
    mimetype = content_type.partition(";")[0].strip().lower()
    body = _body(environ)
    query_string = str(environ.get("QUERY_STRING", ""))
    form: dict[str, list[str]] = {}
    if mimetype == FORM and body:
        _check_count(body.count(b"&"), "form")
        form = parse_pairs(body.decode("utf-8", "replace"))
    _check_count(query_string.count("&"), "query")
    root = _base_path(public_base) if public_base else None
    return WebhookRequest(
        path=str(environ.get("PATH_INFO", "")),
        root=str(environ.get("SCRIPT_NAME", "")).rstrip("/") if root is None else root,
        query=parse_pairs(query_string),
        form=form,
        content_type=mimetype,
        body=body,
        signature=environ.get("HTTP_X_TWILIO_SIGNATURE"),
        signature_settings=environ.get("HTTP_X_TWILIO_WEBHOOKS_SIGNATURE_SETTINGS"),
        url=public_url(environ, public_base),
    )


def _body(environ: dict[str, Any]) -> bytes:
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        length = -1
    if length < 0:
        if not environ.get("wsgi.input_terminated"):
            return b""  # no length and no end marker: reading could block forever
        body = bytes(stream.read(MAX_BODY_BYTES + 1))
    elif length > MAX_BODY_BYTES:
        raise BodyTooLarge(f"a webhook body of {length} bytes")
    else:
        body = bytes(stream.read(length))
    if len(body) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"a webhook body over {MAX_BODY_BYTES} bytes")
    return body


def _check_count(separators: int, where: str) -> None:
    """Refuse a form or query of more pieces than :data:`MAX_PARAMETERS` (one count in C).

    Empty pieces (``a=1&&b=2``) count too: Twilio never sends them, and counting separators is
    what keeps the check cheaper than the parse it guards.
    """
    if separators >= MAX_PARAMETERS:
        raise TooManyParameters(
            f"a webhook {where} of {separators + 1} parameters, over the {MAX_PARAMETERS} allowed"
        )


def parse_pairs(text: str) -> dict[str, list[str]]:
    """``name=value&...`` as ``parse_qsl(text, keep_blank_values=True)`` reads it, by name."""
    pairs: dict[str, list[str]] = {}
    for piece in text.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = unquote(name, errors="replace")
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:
            if value.startswith("%2B") and "%" not in value[3:]:
                value = "+" + value[3:]  # an E.164 number: an inbound call brings four or more
            else:
                value = unquote(value, errors="replace")
        values = pairs.get(name)
        if values is None:
            pairs[name] = [value]
        else:
            values.append(value)
    return pairs


def public_url(environ: dict[str, Any], public_base: str | None = None) -> str:
    """The URL Twilio requested, as Twilio saw it (percent-escapes exactly as sent)."""
    target = _request_target(environ)
    if public_base:
        root = str(environ.get("SCRIPT_NAME", ""))
        if root and target.startswith(root):
            target = target[len(root) :]
        return public_base.rstrip("/") + target
    scheme = str(environ.get("wsgi.url_scheme", "http"))
    host = environ.get("HTTP_HOST")
    if not host:
        host = f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '')}"
    default_port = _DEFAULT_PORTS.get(scheme)
    if default_port and host.endswith(default_port):  # as werkzeug's request.host does
        host = host[: -len(default_port)]
    return f"{scheme}://{str(host).rstrip(':')}{target}"


_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


@functools.lru_cache(maxsize=8)
def _base_path(public_base: str) -> str:
    """The path of ``PUBLIC_BASE_URL``, without its trailing slash."""
    return urlsplit(public_base).path.rstrip("/")


def _request_target(environ: dict[str, Any]) -> str:
    """The path and query of the request line, before any decoding."""
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
