"""The job queue: texts and emails a flow sends, off the caller's webhook, at most once each.

A saved turn's messages reach the event stream as ``message_queued`` events (the outbox, see
:mod:`conversation.message_jobs`); the relay (:mod:`jobs.relay`) turns each into a Dramatiq
message on the broker ``QUEUE_URL`` names (:mod:`jobs.broker`); a Dramatiq worker sends it
(:mod:`jobs.actors`, :mod:`jobs.sms`, :mod:`jobs.email`) and the outcome lands in the caller's
session (:func:`ivr.messages.update`) and the event stream. Twilio's later word on a text comes
to ``POST /sms/status`` (:mod:`webhooks.sms_status`).
"""
