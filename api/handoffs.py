"""``GET /api/handoffs/<id>`` and ``GET /api/calls/<CallSid>/handoff``: a handoff bundle as JSON.

The bundle (``docs/handoff-bundle.schema.json``) is what a CRM or an agent's tool pulls when a
caller is handed over: by the handoff id it was told (the ``webhook-id`` of the outgoing webhook,
a SIP header, a task attribute), or by the call's CallSid for its latest handoff. Answers: 200
with the bundle, 400 for an id that cannot be one, 401 without the bearer token, 404 when unknown
or expired (bundles are kept ``HANDOFF_TTL``), 503 when Redis does not answer. Only the
``Authorization`` header authenticates: a console session cookie does not open the API. Bundles
hold masked values only, and are never cached on the way (``Cache-Control: no-store``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from api.auth import error, require_token
from context.handoffs import HandoffStore
from ivr.errors import StoreUnavailable

bp = Blueprint("api_handoffs", __name__, url_prefix="/api")

CALL_SID = re.compile(r"CA[0-9a-f]{32}")
HANDOFF_ID = re.compile(r"HO[0-9a-f]{32}")


@bp.after_request
def _never_cached(response: Response) -> Response:
    """Bundles describe a person: no proxy or browser keeps a copy (errors included)."""
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/handoffs/<handoff_id>")
@require_token
def by_id(handoff_id: str) -> Response:
    """The bundle of handoff ``handoff_id``."""
    if not HANDOFF_ID.fullmatch(handoff_id):
        return error(400, "a handoff id is HO followed by 32 lowercase hex digits")
    return _answer(lambda store: store.get(handoff_id), f"no handoff {handoff_id} (or it expired)")


@bp.get("/calls/<call_sid>/handoff")
@require_token
def for_call(call_sid: str) -> Response:
    """The latest bundle of call ``call_sid``."""
    if not CALL_SID.fullmatch(call_sid):
        return error(400, "a CallSid is CA followed by 32 lowercase hex digits")
    return _answer(
        lambda store: store.for_call(call_sid),
        f"call {call_sid} was not handed over (or its handoff expired)",
    )


def _answer(find: Callable[[HandoffStore], dict[str, Any] | None], missing: str) -> Response:
    store: HandoffStore = current_app.extensions["omnivoice.handoffs"]
    try:
        found = find(store)
    except StoreUnavailable:
        return error(503, "handoffs cannot be read right now: Redis did not answer; try again")
    if found is None:
        return error(404, missing)
    return jsonify(found)
