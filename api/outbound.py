"""``POST /api/outbound``: reach a customer first, by a call that runs a flow or by a text.

The JSON body is ``{"to": "+14155550123", "channel": "voice", "flow": "reminder",
"variables": {...}, "purpose": "service"}`` or, for a text, ``"channel": "sms"`` with ``"body"``.
The answer is ``202 {"sid": ..., "channel": ..., "to": ...}`` once Twilio took it, or an error
``{"error": sentence}``: 400 bad input, 401 no token, 403 no consent, 404 no such flow, 409 quiet
hours, 429 pacing, 502 Twilio refused, 503 not configured or a back-end down.
"""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.auth import error, require_token
from conversation.outbound import OutboundRefused, OutboundRequest, OutboundService

bp = Blueprint("api_outbound", __name__, url_prefix="/api")


class OutboundBody(BaseModel):
    """What a request to reach out holds."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=40)
    channel: Literal["voice", "sms"] = "voice"
    flow: str | None = Field(default=None, max_length=64)
    variables: dict[str, Any] = Field(default_factory=dict, max_length=50)
    purpose: str = Field(default="service", pattern=r"^[a-z][a-z_]{0,31}$")
    body: str | None = Field(default=None, max_length=1600)


@bp.post("/outbound")
@require_token
def outbound() -> Response:
    """Place the call or send the text the body asks for."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        return error(400, "the body must be a JSON object")
    try:
        body = OutboundBody.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        return error(400, f"{where}: {first['msg']}")
    service: OutboundService = current_app.extensions["omnivoice.outbound"]
    try:
        placed = service.place(
            OutboundRequest(
                to=body.to,
                channel=body.channel,
                flow=body.flow,
                variables=body.variables,
                purpose=body.purpose,
                body=body.body,
            )
        )
    except OutboundRefused as refused:
        return error(refused.status, refused.reason)
    response = jsonify({"sid": placed.sid, "channel": placed.channel, "to": placed.to})
    response.status_code = 202
    return response
