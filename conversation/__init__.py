"""The conversation service: the one place that loads a session, decides, steps the flow engine,
settles the turn's effects, saves, and hands the turn's events to the event sinks.

Channels are thin around it: the voice webhooks (and, next, SMS, web pages and the agent
console) parse their request, call :class:`~conversation.service.ConversationService`, and send
what the channel's renderer made of the turn.
"""
