"""Adapters to the world outside a call: HTTP data dips now; SMS and email senders later."""
