"""A small airline back-end for the demo flow's data dips (``/demo/api/...``).

It stands in for a customer's real booking system so the demo shows a real HTTP data dip:
look up a booking by confirmation code, list rebooking options, rebook. The demo flow calls it by
relative URL, which the fetcher serves in-process (see :mod:`data_dips.http`).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, jsonify, request

bp = Blueprint("demo_api", __name__, url_prefix="/demo/api")

BOOKINGS: dict[str, dict[str, Any]] = {
    "ABC123": {
        "passenger": "Ada Lovelace",
        "flight": "OV 101",
        "origin": "San Francisco",
        "destination": "New York",
        "departs": "9:40 AM",
        "status": "delayed",
        "delay_minutes": 95,
        "gate": "B12",
    },
    "XYZ789": {
        "passenger": "Alan Turing",
        "flight": "OV 220",
        "origin": "London",
        "destination": "Boston",
        "departs": "2:15 PM",
        "status": "on time",
        "delay_minutes": 0,
        "gate": "A3",
    },
    "QRS456": {
        "passenger": "Grace Hopper",
        "flight": "OV 330",
        "origin": "Chicago",
        "destination": "Denver",
        "departs": "6:05 PM",
        "status": "cancelled",
        "delay_minutes": 0,
        "gate": None,
    },
}

ALTERNATIVES = [
    {"flight": "OV 105", "departs": "1:10 PM"},
    {"flight": "OV 109", "departs": "5:45 PM"},
]


def _booking(code: str) -> dict[str, Any]:
    booking = BOOKINGS.get(code.upper())
    if booking is None:
        abort(404)
    return {"code": code.upper(), **booking}


@bp.get("/bookings/<code>")
def booking(code: str) -> Response:
    """A booking by confirmation code (404 if unknown)."""
    return jsonify(_booking(code))


@bp.get("/bookings/<code>/options")
def options(code: str) -> Response:
    """Flights the booking can move to."""
    _booking(code)
    return jsonify({"options": ALTERNATIVES})


@bp.post("/bookings/<code>/rebook")
def rebook(code: str) -> Response:
    """Move a booking to option 1 or 2 of :func:`options`."""
    current = _booking(code)
    body = request.get_json(silent=True) or {}
    choice = body.get("option")
    if choice not in (1, 2, "1", "2"):
        return Response('{"error": "option must be 1 or 2"}', 400, mimetype="application/json")
    chosen = ALTERNATIVES[int(choice) - 1]
    return jsonify({"code": current["code"], "rebooked": True, **chosen})
