"""The Dramatiq actor that sends one message, at most once, and records what became of it.

A queue message carries the job sealed, as the outbox event had it (the body never lies in the
broker in clear), and its id is the message's idempotency key. Sending one:

1. Open the job; claim its key (:mod:`jobs.claims`). A key already finished with is not sent
   again: its recorded outcome is put on the session again (harmless) and that is all. A key
   another attempt claimed moments ago (a duplicate delivered at the same time) is tried again
   later.
2. For a text: the number's consent (:func:`context.history.consents.decide`, channel ``sms``,
   purpose ``service``): an opted-out number is never texted (status ``opted_out``).
3. Issue the message's page links (:meth:`context.links.LinkStore.issue`) and put their URLs in
   place of the body's marks (:func:`ivr.links.fill`).
4. A claim left ``sending`` by an attempt that never finished (its worker died mid-send): ask
   Twilio for a text with this body to this number since then; found, it counts as sent.
5. Send. Sent → ``sent``, with the provider's id. A permanent failure → ``failed`` at once. A
   transient one → retried with exponential backoff (Dramatiq's Retries, ``max_retries``), then
   ``failed`` when the retries run out.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq import Broker
from dramatiq.middleware import CurrentMessage

from context.links import LinkRecord, LinkStore
from context.sealing import Sealer
from conversation.message_jobs import open_job
from ivr import links, messages
from ivr.errors import StoreUnavailable
from jobs.claims import Claim, Claims
from jobs.outcome import Busy, EmailSending, Permanent, SendFailed, Sent, TextSending, Transient
from jobs.outcomes import Outcomes

log = logging.getLogger(__name__)

ACTOR = "omnivoice_send_message"
QUEUE = "omnivoice.messages"  # the default; each key prefix gets its own (queue_for)
MAX_RETRIES = 8
MIN_BACKOFF_MS = 5_000
MAX_BACKOFF_MS = 15 * 60_000
TIME_LIMIT_MS = 120_000


def queue_for(prefix: str) -> str:
    """The queue of the deployment whose Redis keys start with ``prefix`` (several deployments,
    or test runs, can share one RabbitMQ)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", prefix) + ".messages"


Consent = Callable[[str], bool]  # may this number be texted (no STOP on record)?


def same_text(template: str) -> Callable[[str], bool]:
    """Whether a text is ``template`` with its link marks filled in (by any URLs)."""
    parts = re.split(r"\[\[link:LK[0-9a-z]{20}\]\]", template)
    pattern = re.compile(r"\S+".join(re.escape(part) for part in parts), re.DOTALL)
    return lambda text: pattern.fullmatch(text) is not None


class OptedOut(SendFailed):
    """The number said STOP: it is never texted."""


class MessageJobs:
    """Declares the send actor on ``broker`` and carries out its messages."""

    def __init__(
        self,
        broker: Broker,
        sealer: Sealer,
        claims: Claims,
        outcomes: Outcomes,
        *,
        sms: TextSending | None,
        email: EmailSending | None,
        links: LinkStore | None,
        consent: Consent | None = None,
        clock: Callable[[], float] = time.time,
        max_retries: int = MAX_RETRIES,
        min_backoff_ms: int = MIN_BACKOFF_MS,
        max_backoff_ms: int = MAX_BACKOFF_MS,
        queue_name: str = QUEUE,
    ) -> None:
        self.broker = broker
        self.sealer = sealer
        self.claims = claims
        self.outcomes = outcomes
        self.sms = sms
        self.email = email
        self.links = links
        self.consent = consent
        self.clock = clock
        self.max_retries = max_retries
        self.queue_name = queue_name
        declare = dramatiq.actor(
            broker=broker,
            actor_name=ACTOR,
            queue_name=queue_name,
            max_retries=max_retries,
            min_backoff=min_backoff_ms,
            max_backoff=max_backoff_ms,
            time_limit=TIME_LIMIT_MS,
        )
        self.actor: dramatiq.Actor[[str], None] = declare(self.perform)

    # ---- enqueueing ---------------------------------------------------------------------------
    def enqueue(self, key: str, sealed: str) -> None:
        """Put message ``key`` (its job ``sealed``) on the queue.

        Raises:
            Exception: the broker did not take it (the relay leaves the event pending).
        """
        message = self.actor.message(sealed).copy(message_id=key)
        self.broker.enqueue(message)

    # ---- one delivery -------------------------------------------------------------------------
    def perform(self, sealed: str) -> None:
        """Send the message of job ``sealed`` (the actor's body)."""
        try:
            job = open_job({"job": sealed}, self.sealer)
        except Exception as exc:  # checked by the relay already: a key rotated meanwhile
            log.error("a queued message cannot be opened (%s): dropped", type(exc).__name__)
            return
        current = CurrentMessage.get_current_message()
        retries = int(current.options.get("retries", 0)) if current is not None else 0
        self.deliver(job, final=retries >= self.max_retries)

    def deliver(self, job: dict[str, Any], final: bool = True) -> str:
        """Send ``job`` unless it went already; the status it ends in.

        Raises:
            Transient: not sent this time, and not ``final``: the queue tries again later.
        """
        key = str(job["key"])
        now = self.clock()
        claim = self.claims.take(key, now)
        if claim.busy:
            if final:  # the other attempt records the outcome
                log.warning("message %s: out of retries while another attempt sends it", key)
                return "busy"
            raise Busy(f"message {key} is being sent by another attempt; will look again")
        if claim.done:
            log.info("message %s was already sent: not sent again", key)
            status = claim.status or messages.SENT
            info = {"sid": claim.sid, "error_code": claim.error_code, "error": claim.error}
            self._record(job, status, **info)
            return status
        try:
            sent = self._send(job, claim)
        except OptedOut as exc:
            return self._finish(job, messages.OPTED_OUT, error=str(exc))
        except Permanent as exc:
            log.error("message %s failed for good: %s", key, exc)
            return self._finish(job, messages.FAILED, error_code=exc.code, error=str(exc))
        except Transient as exc:
            if claim.first and not exc.reached:
                self.claims.release(key)  # it certainly did not go: the next try sends afresh
            if final:
                log.error("message %s failed, out of retries: %s", key, exc)
                return self._finish(job, messages.FAILED, error_code=exc.code, error=str(exc))
            log.warning("message %s not sent yet, will retry: %s", key, exc)
            raise
        how = "found already sent" if sent.found else "sent"
        log.info("message %s %s (%s)", key, how, sent.sid)
        return self._finish(job, messages.SENT, sid=sent.sid)

    def _finish(
        self,
        job: dict[str, Any],
        status: str,
        *,
        sid: str | None = None,
        error_code: str | None = None,
        error: str | None = None,
    ) -> str:
        self.claims.finish(
            str(job["key"]), self.clock(), sid, status=status, error_code=error_code, error=error
        )
        self._record(job, status, sid=sid, error_code=error_code, error=error)
        return status

    def _record(self, job: dict[str, Any], status: str, **info: Any) -> None:
        try:
            self.outcomes.record(job, status, **info)
        except StoreUnavailable as exc:  # the claim holds the outcome: a redelivery records it
            raise Transient(f"the outcome could not be recorded: {exc}") from exc

    # ---- sending ----------------------------------------------------------------------------
    def _send(self, job: dict[str, Any], claim: Claim) -> Sent:
        channel = job.get("channel")
        if channel == "sms":
            return self._text(job, claim)
        if channel == "email":
            return self._email(job)
        raise Permanent(f"a message on channel {channel!r} cannot be sent")

    def _text(self, job: dict[str, Any], claim: Claim) -> Sent:
        if self.sms is None:
            raise Permanent("texts cannot be sent: TWILIO_ACCOUNT_SID is not set")
        to = str(job["to"])
        if self.consent is not None:
            try:
                allowed = self.consent(to)
            except Exception as exc:  # the history database is down: ask again later
                raise Transient(f"consent cannot be checked: {type(exc).__name__}") from exc
            if not allowed:
                raise OptedOut("the number opted out of texts")
        template = str(job.get("body") or "")
        body = self._filled(job, template)
        if not claim.first:  # an earlier attempt may have reached Twilio
            sid = self.sms.already_sent(to, same_text(template), claim.at)
            if sid is not None:
                return Sent(sid, found=True)
        caller = str(job.get("caller") or "")
        call_sid, flow = job.get("call_sid") or None, str(job.get("flow") or "") or None
        return self.sms.send(to, body, str(job["key"]), caller, call_sid, flow)

    def _email(self, job: dict[str, Any]) -> Sent:
        if self.email is None:
            raise Permanent("emails cannot be sent: SMTP_URL is not set")
        text = self._filled(job, str(job.get("body") or ""))
        html = self._filled(job, job["html"]) if job.get("html") else None
        subject = str(job.get("subject") or "")
        return self.email.send(str(job["to"]), subject, text, html, str(job["key"]))

    def _filled(self, job: dict[str, Any], text: str) -> str:
        """``text`` with its link marks replaced by the links' URLs, issued now."""
        wanted = links.marks(text)
        if not wanted:
            return text
        if self.links is None:
            raise Permanent("page links cannot be made: PUBLIC_BASE_URL is not set")
        pages = {str(item["id"]): item for item in job.get("links") or []}
        urls: dict[str, str] = {}
        for link_id in wanted:
            spec = pages.get(link_id)
            if spec is None:
                raise Permanent(f"the body links {link_id}, which the message does not carry")
            record = LinkRecord(
                id=link_id,
                caller=str(job.get("caller") or ""),
                flow=str(job.get("flow") or ""),
                page=str(spec.get("page") or ""),
                conversation=str(job.get("conversation") or ""),
                call_sid=str(job.get("call_sid") or ""),
                issued_at=self.clock(),
                expires=int(spec.get("expires") or 3600),
                via="agent" if job.get("via") == "agent" else str(job.get("channel")),
            )
            try:
                urls[link_id] = self.links.issue(record)
            except StoreUnavailable as exc:
                raise Transient(f"the link cannot be stored: {exc}") from exc
        return links.fill(text, urls)
