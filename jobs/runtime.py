"""The job queue as the app builds it, and the threads that run it.

:func:`build` makes the broker (:mod:`jobs.broker`), the senders and the send actor from the
app's settings, with nothing connected. :class:`JobsRuntime` runs the outbox relay and a
Dramatiq worker: in ``flask --app app worker``, or (``JOBS_IN_PROCESS``, on by default in dev
mode) in threads of the web process, which is how the embedded demo's in-process queue works.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis
from dramatiq import Broker, Worker
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from context.event_stream import EventStream
from context.history import consents
from context.keys import Keys
from context.links import LinkStore
from context.sealing import Sealer
from jobs import broker as brokers
from jobs.actors import Consent, MessageJobs, queue_for
from jobs.claims import Claims
from jobs.dev_outbox import DEV_BASE_URL, DevEmails, DevOutbox, DevTexts
from jobs.email import EmailSender, check_from, parse_smtp_url
from jobs.outcome import EmailSending, TextSending
from jobs.outcomes import Outcomes
from jobs.relay import OutboxRelay
from jobs.sms import SmsSender

if TYPE_CHECKING:
    from conversation.service import ConversationService

log = logging.getLogger(__name__)

WORKER_THREADS = 4


def check_settings(config: Mapping[str, Any]) -> None:
    """Refuse unusable job-queue settings at start-up (``QUEUE_URL``, ``SMTP_URL``,
    ``SMTP_FROM``).

    Raises:
        ConfigError: one of them cannot be used.
    """
    brokers.check_queue_url(config.get("QUEUE_URL"))
    if config.get("SMTP_URL"):
        parse_smtp_url(str(config["SMTP_URL"]))
    check_from(config.get("SMTP_FROM"), config.get("SMTP_URL"))


@dataclass
class JobsRuntime:
    """The queue's parts: the broker, the send actor, and how to make a relay."""

    broker: Broker
    jobs: MessageJobs
    stream: EventStream
    sealer: Sealer
    outcomes: Outcomes
    reclaim_after: float = 30.0
    _threads: list[threading.Thread] = field(default_factory=list)
    _worker: Worker | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def relay(self, consumer: str | None = None) -> OutboxRelay:
        """A relay consumer (named after this host and process unless ``consumer`` is given)."""
        name = consumer or f"{socket.gethostname()}-{os.getpid()}"
        return OutboxRelay(
            self.stream,
            self.sealer,
            self.jobs.enqueue,
            self.outcomes,
            name,
            reclaim_after=self.reclaim_after,
        )

    @property
    def queues(self) -> set[str]:
        """The queues a worker consumes: the messages' and their retries' delay queue."""
        name = self.jobs.queue_name
        return {name, f"{name}.DQ"}

    @property
    def running(self) -> bool:
        """Whether this process runs a worker for the queue already."""
        return self._worker is not None

    def finish_queue(self, timeout: float = 60.0) -> None:
        """Send what the queue holds now, then stop (``worker --once``)."""
        worker = Worker(self.broker, queues=self.queues, worker_threads=1)
        worker.start()
        try:
            self.broker.join(self.jobs.queue_name, timeout=int(timeout * 1000))
            worker.join()
        finally:
            worker.stop()

    def start(self, worker_threads: int = WORKER_THREADS, relay: bool = True) -> JobsRuntime:
        """Run a Dramatiq worker and (with ``relay``) the outbox relay, in threads."""
        self._worker = Worker(self.broker, queues=self.queues, worker_threads=worker_threads)
        self._worker.start()
        if relay:
            outbox = self.relay()
            thread = threading.Thread(
                target=outbox.run, args=(self._stop,), name="outbox-relay", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop the relay and the worker (messages being sent finish first)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        if self._worker is not None:
            self._worker.stop(timeout=int(timeout * 1000))
            self._worker = None
        self.broker.close()  # its connections (RabbitMQ's are per thread)


def build(
    config: Mapping[str, Any],
    sessions_redis: Any,
    keys: Keys,
    stream: EventStream,
    sealer: Sealer,
    service: ConversationService,
    history_db: Callable[[], sessionmaker[DbSession]] | None,
    twilio: Callable[[], Any],
    outbox: DevOutbox | None = None,
) -> JobsRuntime | None:
    """The job queue under ``config``; ``None`` when there is none to have (said in the log).

    ``outbox`` (the embedded demo's) keeps the texts and emails that have nowhere to go: no
    Twilio account, no ``SMTP_URL``; links then point at the demo's own address.

    Raises:
        ConfigError: a setting cannot be used.
    """
    check_settings(config)
    broker: Broker | None = config.get("QUEUE_BROKER")  # a test's, built by the test
    where = "a broker given in the configuration"
    if broker is None:
        target = brokers.target_of(config, sessions_redis)
        if target is None:
            log.warning(brokers.NO_QUEUE)
            return None
        try:
            broker = brokers.build_broker(
                target,
                sessions_redis,
                keys.prefix,
                **dict(config.get("QUEUE_BROKER_OPTIONS") or {}),
            )
        except redis.RedisError as exc:  # a client that talks at once, to a Redis in trouble
            log.error("no job queue: its Redis refused at start-up (%s); texts stay queued", exc)
            return None
        where = f"{target.masked} ({target.kind})"
    outcomes = Outcomes(service)
    sms: TextSending | None = None
    if config.get("TWILIO_ACCOUNT_SID") or config.get("TWILIO_CLIENT"):
        sms = SmsSender(
            twilio,
            config.get("TWILIO_PHONE_NUMBER"),
            config.get("TWILIO_MESSAGING_SERVICE_SID"),
            config.get("PUBLIC_BASE_URL"),
        )
    email: EmailSending | None = None
    if config.get("SMTP_URL"):
        smtp = parse_smtp_url(str(config["SMTP_URL"]))
        email = EmailSender(smtp, str(check_from(config.get("SMTP_FROM"), config["SMTP_URL"])))
    public = config.get("PUBLIC_BASE_URL")
    if outbox is not None:  # the demo: what cannot be sent is kept at /dev/outbox
        sms = sms or DevTexts(outbox)
        email = email or DevEmails(outbox)
        public = public or DEV_BASE_URL
    link_store = None
    if public:
        link_store = LinkStore(sessions_redis, keys, str(config["SECRET_KEY"]), str(public))
    jobs = MessageJobs(
        broker,
        sealer,
        Claims(sessions_redis, keys, busy_for=float(config.get("JOBS_CLAIM_BUSY_SECONDS") or 30.0)),
        outcomes,
        sms=sms,
        email=email,
        links=link_store,
        consent=consent_of(history_db) if history_db is not None else None,
        queue_name=queue_for(keys.prefix),
        **dict(config.get("JOBS_RETRY") or {}),
    )
    log.info("job queue on %s", where)
    return JobsRuntime(
        broker,
        jobs,
        stream,
        sealer,
        outcomes,
        reclaim_after=float(config.get("JOBS_RECLAIM_SECONDS") or 30.0),
    )


def consent_of(history_db: Callable[[], sessionmaker[DbSession]]) -> Consent:
    """Whether a number may be texted, as the customer history says (no STOP on record)."""

    def may_text(number: str) -> bool:
        with history_db()() as db:
            return consents.decide(db, number, "sms", consents.SERVICE).allowed

    return may_text
