"""A local call simulator that behaves like Twilio: it signs webhooks, follows TwiML, and keys or
speaks answers. Developers drive it from ``flask --app app call``; the tests drive whole calls."""

from simulator.call import Call, FlaskTransport, HttpTransport, Transport

__all__ = ["Call", "FlaskTransport", "HttpTransport", "Transport"]
