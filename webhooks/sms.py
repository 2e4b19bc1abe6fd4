"""The inbound SMS webhook Twilio calls: ``POST /sms``.

:func:`register` adds it to the :class:`~webhooks.front.TwilioFront` (one reader, one signature
guard: 403 unsigned). The view parses the text (MessageSid, From, To, Body, NumMedia,
MessagingServiceSid, OptOutType; any other parameter is ignored), hands it to
:class:`~conversation.texts.InboundTexts` and answers with messaging TwiML
(``MessagingResponse``). Requests Twilio never sends get a 400 saying why: no ``MessageSid``,
no ``From``, or a ``Body`` over Twilio's 1,600 characters. Any failure (Redis down, say)
answers an empty ``<Response/>``: the text is not lost (Twilio keeps it in its logs), and no
half-made reply goes out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from context.callers import identify, to_e164
from conversation.inbound import Inbound
from conversation.texts import Text
from webhooks.front import EMPTY_MESSAGING, BadRequest, Reply, Route, TwilioFront
from webhooks.front import twiml as twiml_reply
from webhooks.request import WebhookRequest

if TYPE_CHECKING:
    from conversation.texts import InboundTexts

SMS_PATH = "/sms"
MAX_BODY = 1600  # characters of a text's Body (Twilio's own limit)
MAX_SID = 64


def register(front: TwilioFront, texts: InboundTexts, default_region: str = "US") -> SmsViews:
    """Serve ``/sms`` on ``front``, answered by ``texts``."""
    views = SmsViews(texts, default_region)
    front.register(Route(SMS_PATH, "sms.incoming", views.incoming, EMPTY_MESSAGING))
    return views


class SmsViews:
    """Parse, call the service, render."""

    def __init__(self, texts: InboundTexts, default_region: str = "US") -> None:
        self.texts = texts
        self.default_region = default_region

    def incoming(self, request: WebhookRequest) -> Reply:
        """A text to one of our numbers: the reply, or an empty ``<Response/>`` for none."""
        text = parse_text(request.fields(), self.default_region, request.root)
        reply = self.texts.receive(text)
        return twiml_reply(reply) if reply is not None else EMPTY_MESSAGING


def parse_text(form: Mapping[str, str], default_region: str = "US", url_root: str = "") -> Text:
    """Read an inbound SMS webhook's form.

    Raises:
        BadRequest: no MessageSid or From, or a Body longer than Twilio sends (400).
    """
    sid = (form.get("MessageSid") or form.get("SmsSid") or "").strip()
    if not sid or len(sid) > MAX_SID:
        raise BadRequest(400, "MessageSid is missing or too long")
    sender = (form.get("From") or "").strip()
    if not sender:
        raise BadRequest(400, "From is missing")
    body = form.get("Body") or ""
    if len(body) > MAX_BODY:
        raise BadRequest(400, f"Body is {len(body)} characters, over the {MAX_BODY} of a text")
    inbound = Inbound(
        contact_id=sid,
        caller=identify(sender, sid, default_region),
        to=to_e164(form.get("To"), default_region),
        speech=body.strip() or None,
        url_root=url_root,
        channel="sms",
    )
    return Text(
        inbound=inbound,
        body=body,
        media=_count(form.get("NumMedia")),
        service_sid=(form.get("MessagingServiceSid") or "").strip()[:MAX_SID] or None,
        opt_out_type=(form.get("OptOutType") or "").strip()[:16] or None,
    )


def _count(raw: str | None) -> int:
    try:
        value = int((raw or "").strip())
    except ValueError:
        return 0
    return value if 0 <= value <= 10 else 0
