"""Bearer-token authentication for ``/api/...``: ``Authorization: Bearer <API_TOKEN>``.

Without ``API_TOKEN`` the API is off (503): an API that anybody can call is never the default.
Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Response, current_app, jsonify, request


def error(status: int, message: str, **headers: str) -> Response:
    """A JSON error: ``{"error": message}`` with ``status``."""
    response = jsonify({"error": message})
    response.status_code = status
    response.headers.update(headers)
    return response


def require_token(view: Callable[..., Any]) -> Callable[..., Any]:
    """Let ``view`` run only for requests carrying the configured bearer token."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        expected = current_app.config.get("API_TOKEN")
        if not expected:
            return error(503, "the API is off: set API_TOKEN to turn it on")
        scheme, _, given = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), str(expected).encode()
        ):
            challenge = {"WWW-Authenticate": 'Bearer realm="omnivoice"'}
            return error(401, "a valid Authorization: Bearer token is needed", **challenge)
        return view(*args, **kwargs)

    return guarded
