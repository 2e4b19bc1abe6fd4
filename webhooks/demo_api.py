"""A small airline back-end for the demo flow's data dips (``/demo/api/...``).

It stands in for a customer's real booking system so the demo shows a real HTTP data dip:
look up a booking by confirmation code, list rebooking options, rebook. The demo flow calls it by
relative URL, which the fetcher serves in-process (see :mod:`data_dips.http`). It is served in
dev mode, or when ``DEMO_API`` asks for it (see :func:`app.demo_api_wanted`). Every refusal is a
4xx with a JSON ``{"error": sentence}``, whatever the request held.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException

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


CHOICES = {1: 0, 2: 1, "1": 0, "2": 1}  # what "option" may be, and its index in ALTERNATIVES


class Refused(Exception):
    """A request the demo back-end answers with a 4xx and a JSON error."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


@bp.errorhandler(Refused)
def refused(exc: Refused) -> tuple[Response, int]:
    """``{"error": ...}`` with the refusal's status."""
    return jsonify({"error": exc.error}), exc.status


@bp.app_errorhandler(HTTPException)
def http_error(exc: HTTPException) -> HTTPException | tuple[Response, int]:
    """Flask's own refusals (no such URL, wrong method, ...) as JSON too, under ``/demo/api``.

    Routing fails before any blueprint is chosen, so this is registered on the app; every other
    path keeps Flask's answer.
    """
    if exc.code is None or not request.path.startswith(f"{bp.url_prefix}/"):
        return exc
    return jsonify({"error": f"{exc.name}."}), exc.code


def _booking(code: str) -> dict[str, Any]:
    booking = BOOKINGS.get(code.upper())
    if booking is None:
        raise Refused(404, "No booking has this confirmation code.")
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
    """Move a booking to option 1 or 2 of :func:`options` (body ``{"option": 1}``), or to one
    of them by flight number (``{"flight": "OV 105"}``)."""
    current = _booking(code)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Refused(400, 'The body must be a JSON object such as {"option": 1}.')
    if "flight" in body:  # a flight picked by number (the demo's page of flights)
        flights = [option["flight"] for option in ALTERNATIVES]
        if body["flight"] not in flights:
            raise Refused(400, f"flight must be one of {', '.join(flights)}.")
        picked = ALTERNATIVES[flights.index(body["flight"])]
        return jsonify({"code": current["code"], "rebooked": True, **picked})
    choice = body.get("option")
    # A JSON true is equal to 1 in Python and 1.0 hashes like it: only exact ints and strings.
    index = CHOICES.get(choice) if type(choice) in (int, str) else None
    if index is None:
        raise Refused(400, "option must be 1 or 2.")
    return jsonify({"code": current["code"], "rebooked": True, **ALTERNATIVES[index]})
