"""The Omnivoice flow engine: load YAML call flows into typed, frozen objects and step them.

This package is pure. It imports no Flask, Redis, SQLAlchemy or Twilio REST client: a step is a
function of (flow version, session, caller event) that returns a :class:`~ivr.turn.Turn`.
"""
