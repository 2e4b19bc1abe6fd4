"""Omnivoice's WSGI entry: ``create_app(config=None)`` builds the app, ``app`` is what gunicorn runs.

Configuration comes from the environment (documented in README.md), then ``config`` overrides it
(tests pass their Redis client, key prefix and flows directory that way).
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import click
from flask import Flask, Response
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.wrappers import Request
from sqlalchemy.orm import Session, sessionmaker
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client as TwilioClient
from werkzeug.middleware.proxy_fix import ProxyFix

import console
import pages
from api import handoffs as handoffs_api
from api import outbound as outbound_api
from context import health
from context.agent_feed import AgentFeed
from context.event_stream import EventStream
from context.handoffs import HandoffStore
from context.history import database
from context.history import writer as history_writer
from context.history.runtime import InProcessWriter
from context.keys import Keys
from context.outbound_tokens import OutboundTokens
from context.redis_client import Topology, connect, topology_of
from context.sealing import Sealer
from context.sessions import SessionStore
from context.text_replies import TextReplies
from conversation import handoff_webhooks, webhook_runner
from conversation.events import LogSink
from conversation.events import log as calls_log
from conversation.feed_sink import FeedSink
from conversation.flow_versions import FlowVersions
from conversation.outbound import OutboundService, OutboundSettings
from conversation.outbound_rules import QuietHours
from conversation.resume_codes import CodeLimits, ResumeCodes
from conversation.service import INCOMING_STEP, MAX_STEP, ConversationService
from conversation.texts import InboundTexts
from data_dips.http import HttpFetcher
from ivr import watcher
from ivr.catalog import Catalog
from ivr.errors import ConfigError
from ivr.flow import MAX_FLOW_BYTES
from jobs import dev_outbox
from jobs import relay as jobs_relay
from jobs import runtime as jobs_runtime
from jobs.dev_outbox import DevOutbox
from simulator.cli import call as simulated_call
from webhooks import (
    demo_api,
    front,
    history_cli,
    keys_cli,
    logs,
    metrics,
    outbound_cli,
    recording_webhooks,
    sms,
    sms_status,
    sms_text,
    transfer_webhooks,
    twiml,
    voice,
)
from webhooks.cli import flows, quiet_start

log = logging.getLogger("omnivoice")

# The event stream's consumers /healthz reports on (group -> what it is).
CONSUMERS = {
    history_writer.GROUP: "history writer",
    handoff_webhooks.GROUP: "handoff webhook",
    jobs_relay.GROUP: "outbox relay (texts and emails)",
}
TWILIO_TIMEOUT = 10.0  # seconds a REST request to Twilio may take (connect and read)
FEED_READ_TIMEOUT = 20.0  # seconds: the agents' feed reader's socket timeout (blocks ~10 s)
TRUE = {"1", "true", "yes", "on"}
FALSE = {"", "0", "false", "no", "off"}
NO_SECRET_KEY = (
    "links and console cookies signed by one worker must verify on every other, so set "
    "SECRET_KEY to a long random string shared by all workers, e.g. "
    "python -c 'import secrets; print(secrets.token_hex(32))' (OMNIVOICE_DEV=1 makes up one "
    "per process for a demo)."
)


def settings_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """Omnivoice's settings from environment variables, with their documented defaults.

    Raises:
        ConfigError: a variable holds a value that cannot be used (named with the value).
    """
    flow_env_names = [n.strip() for n in environ.get("FLOW_ENV", "").split(",") if n.strip()]
    settings = {
        "TWILIO_ACCOUNT_SID": environ.get("TWILIO_ACCOUNT_SID"),
        "TWILIO_AUTH_TOKEN": environ.get("TWILIO_AUTH_TOKEN"),
        "TWILIO_PHONE_NUMBER": environ.get("TWILIO_PHONE_NUMBER"),
        "REDIS_URL": environ.get("REDIS_URL"),
        "REDIS_TIMEOUT": _number(environ, "REDIS_TIMEOUT", "0.5", float, above=0),
        "REDIS_KEY_PREFIX": _key_prefix(environ.get("REDIS_KEY_PREFIX", "omnivoice")),
        "DATABASE_URL": environ.get("DATABASE_URL", "sqlite:///omnivoice.db"),
        "FLOWS_DIR": environ.get("FLOWS_DIR", "flows"),
        "DEFAULT_FLOW": environ.get("DEFAULT_FLOW"),
        "FLOW_RELOAD_SECONDS": _number(environ, "FLOW_RELOAD_SECONDS", "2", float),
        "FLOW_MAX_BYTES": _number(environ, "FLOW_MAX_BYTES", str(MAX_FLOW_BYTES), int, above=0),
        "FLOW_ENV": {name: environ.get(name, "") for name in flow_env_names},
        "PUBLIC_BASE_URL": environ.get("PUBLIC_BASE_URL"),
        "TRUST_PROXY": _number(environ, "TRUST_PROXY", "0", int, above=-1),
        "SECRET_KEY": environ.get("SECRET_KEY") or None,  # required outside dev mode
        "API_TOKEN": environ.get("API_TOKEN") or None,  # unset: /api/... answers 503
        "OUTBOUND_QUIET_HOURS": QuietHours.parse(
            environ.get("OUTBOUND_QUIET_HOURS", "21:00-08:00")
        ),
        "OUTBOUND_PER_SECOND": _number(environ, "OUTBOUND_PER_SECOND", "1", int, above=0),
        "SENSITIVE_DATA_KEYS": environ.get("SENSITIVE_DATA_KEYS") or None,  # else from SECRET_KEY
        "DEV_MODE": _flag(environ, "OMNIVOICE_DEV", ""),
        "DEFAULT_REGION": environ.get("DEFAULT_REGION", "US"),
        "SESSION_TTL": _number(environ, "SESSION_TTL", "86400", int, above=0),
        "WEBHOOK_BUDGET_SECONDS": _number(
            environ, "WEBHOOK_BUDGET_SECONDS", "11", float, above=0, below=15
        ),
        "RESUME_CODE_FAILURES_PER_MINUTE": _number(
            environ, "RESUME_CODE_FAILURES_PER_MINUTE", "30", int, above=0
        ),
        "EVENT_STREAM_SHARDS": _number(
            environ, "EVENT_STREAM_SHARDS", "8", int, above=0, below=1025
        ),
        # The worker's history writer gives way to webhooks on a shared box (see the worker).
        "HISTORY_WRITER_NICE": _number(
            environ, "HISTORY_WRITER_NICE", "10", int, above=-1, below=20
        ),
        "HANDOFF_TTL": _number(environ, "HANDOFF_TTL", str(7 * 86400), int, above=0),
        # Checked (with the secret) when the app is built: see conversation.handoff_webhooks.
        "HANDOFF_WEBHOOK_URL": environ.get("HANDOFF_WEBHOOK_URL") or None,
        "HANDOFF_WEBHOOK_SECRET": environ.get("HANDOFF_WEBHOOK_SECRET") or None,
        "TASKROUTER_WORKFLOW_SID": _workflow_sid(environ.get("TASKROUTER_WORKFLOW_SID")),
        "FALLBACK_NUMBER": environ.get("FALLBACK_NUMBER"),
        "FALLBACK_QUEUE": environ.get("FALLBACK_QUEUE"),
        "DEMO_API": _flag(environ, "DEMO_API", "") if "DEMO_API" in environ else None,
        "LOG_LEVEL": environ.get("LOG_LEVEL", "INFO"),
        "LOG_FORMAT": environ.get("LOG_FORMAT", "json"),
        # The job queue and its senders: checked when the app is built (see jobs.runtime).
        "QUEUE_URL": environ.get("QUEUE_URL") or None,
        "SMTP_URL": environ.get("SMTP_URL") or None,
        "SMTP_FROM": environ.get("SMTP_FROM") or None,
        "TWILIO_MESSAGING_SERVICE_SID": environ.get("TWILIO_MESSAGING_SERVICE_SID") or None,
    }
    # The embedded demo records history in its own process unless told otherwise.
    default = "1" if settings["DEV_MODE"] else "0"
    settings["HISTORY_IN_PROCESS"] = _flag(environ, "HISTORY_IN_PROCESS", default)
    settings["HANDOFF_WEBHOOK_IN_PROCESS"] = _flag(environ, "HANDOFF_WEBHOOK_IN_PROCESS", default)
    settings["JOBS_IN_PROCESS"] = _flag(environ, "JOBS_IN_PROCESS", default)
    return settings


def _number(
    environ: Mapping[str, str],
    name: str,
    default: str,
    kind: type[int] | type[float],
    above: float | None = None,
    below: float | None = None,
) -> Any:
    """Variable ``name`` as an ``int`` or a finite ``float``, strictly between the bounds."""
    raw = environ.get(name, default)
    what = "a whole number" if kind is int else "a number"
    bounds = ""
    if above is not None:
        bounds = f" of {int(above) + 1} or more" if kind is int else f" above {above:g}"
    if below is not None:
        bounds += f" and below {below:g}"
    try:
        value = kind(raw.strip())
    except ValueError:
        raise ConfigError(name, raw, f"it must be {what}{bounds}.") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(name, raw, f"it must be a finite number{bounds}.")
    if (above is not None and value <= above) or (below is not None and value >= below):
        raise ConfigError(name, raw, f"it must be {what}{bounds}.")
    return value


def _flag(environ: Mapping[str, str], name: str, default: str) -> bool:
    """Variable ``name`` as a boolean: 1/true/yes/on or 0/false/no/off (or empty)."""
    raw = environ.get(name, default)
    if raw.strip().lower() in TRUE:
        return True
    if raw.strip().lower() in FALSE:
        return False
    raise ConfigError(name, raw, "it must be 1, true, yes or on, or 0, false, no or off.")


def _workflow_sid(raw: str | None) -> str | None:
    """``TASKROUTER_WORKFLOW_SID``: a workflow SID (``WW`` and 32 hex digits), or unset."""
    value = (raw or "").strip()
    if not value:
        return None
    if not re.fullmatch(r"WW[0-9a-fA-F]{32}", value):
        raise ConfigError(
            "TASKROUTER_WORKFLOW_SID", raw, "it must be a workflow SID: WW and 32 hex digits."
        )
    return value


def _key_prefix(raw: str) -> str:
    """``REDIS_KEY_PREFIX``: braces would become Redis Cluster hash tags and split a caller's keys."""
    if not raw or "{" in raw or "}" in raw:
        raise ConfigError(
            "REDIS_KEY_PREFIX",
            raw,
            "it must be non-empty text without { or }: keys put the caller in braces as a Redis "
            "Cluster hash tag, and a brace in the prefix would become the tag instead.",
        )
    return raw


def secret_key(config: Mapping[str, Any]) -> str:
    """The ``SECRET_KEY`` to sign with: the configured one, or a random one where that is fine.

    Outside dev mode a server must have one shared by every worker; a command-line command
    (``flask --app app flows validate``, ``flask --app app call``) signs nothing and gets a
    random one.

    Raises:
        ConfigError: no ``SECRET_KEY`` outside dev mode, for a server.
    """
    if config.get("SECRET_KEY"):
        return str(config["SECRET_KEY"])
    if config["DEV_MODE"]:
        log.warning("DEV MODE: SECRET_KEY is not set; using a random one for this process")
    elif click.get_current_context(silent=True) is None:  # gunicorn, not the flask command
        raise ConfigError("SECRET_KEY", None, NO_SECRET_KEY)
    return secrets.token_hex(32)


def demo_api_wanted(config: Mapping[str, Any]) -> bool:
    """Whether to serve the demo back-end: as ``DEMO_API`` says, else only in dev mode.

    It is a stand-in for a customer's booking system that anyone can call unauthenticated, so a
    production server serves it only when asked to.
    """
    wanted = config.get("DEMO_API")
    return bool(config["DEV_MODE"] if wanted is None else wanted)


class CookielessSessions(SecureCookieSessionInterface):
    """Flask's cookie sessions, without building a signer for requests that carry no cookie.

    Data dips served in-process (the demo back-end), health checks and metrics scrapes carry
    none, and the signer was a measurable share of such a request's time.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


def _history_database(app: Flask) -> Callable[[], sessionmaker[Session]]:
    """The history database's session factory, opened on first use (the web process needs it
    only for outbound requests' consent checks)."""
    return functools.cache(
        lambda: database.sessions(database.open_engine(app.config["DATABASE_URL"]))
    )


def _twilio_client(app: Flask) -> Callable[[], TwilioClient]:
    """Twilio's REST client (``TWILIO_CLIENT`` in tests), made on first use, with a timeout:
    a text the job queue sends, an outbound call or an agent's Take call never hangs on a
    Twilio that does not answer (a send that timed out is asked about before it is sent again,
    see :mod:`jobs.sms`)."""
    return functools.cache(
        lambda: (
            app.config.get("TWILIO_CLIENT")
            or TwilioClient(
                app.config["TWILIO_ACCOUNT_SID"],
                app.config["TWILIO_AUTH_TOKEN"],
                http_client=TwilioHttpClient(timeout=TWILIO_TIMEOUT),
            )
        )
    )


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Omnivoice app: webhooks, the flow catalog and the session store."""
    app = Flask(__name__)
    app.session_interface = CookielessSessions()
    app.config.from_mapping(settings_from_env(os.environ))
    app.config.update(config or {})
    if app.config.get("CONFIGURE_LOGGING", True):
        logs.configure(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
        if quiet_start(sys.argv):  # flows validate, flows schema, call: their output only
            logging.disable(logging.CRITICAL)
    app.config["SECRET_KEY"] = secret_key(app.config)
    if app.config["DEV_MODE"]:
        log.warning("DEV MODE: Twilio signatures are NOT checked. Never expose this server.")

    connection = app.config.get("REDIS_CLIENT") or connect(
        app.config["REDIS_URL"], app.config["REDIS_TIMEOUT"], app.config["DEV_MODE"]
    )
    # Sessions in one process are fine for a demo, never for a server that takes real calls.
    unshared = not app.config.get("REDIS_CLIENT") and not app.config["REDIS_URL"]
    unfit = unshared and not app.config["DEV_MODE"]
    keys = Keys(app.config["REDIS_KEY_PREFIX"])
    cluster = topology_of(connection) is Topology.CLUSTER  # a REDIS_CLIENT too, not just the URL
    events = EventStream(connection, keys, app.config["EVENT_STREAM_SHARDS"])
    sealer = Sealer.from_settings(app.config["SENSITIVE_DATA_KEYS"], app.config["SECRET_KEY"])
    store = SessionStore(
        connection, keys, app.config["SESSION_TTL"], events=events, cluster=cluster, sealer=sealer
    )
    catalog = Catalog(
        app.config["FLOWS_DIR"], app.config["DEFAULT_FLOW"], app.config["FLOW_MAX_BYTES"]
    )
    catalog.refresh()
    if app.config["FLOW_RELOAD_SECONDS"] > 0:  # off the request path: no caller waits on a reload
        watcher.watch(catalog, app.config["FLOW_RELOAD_SECONDS"])
    if not catalog.flows():
        log.error("no usable flow in %s: calls will hear an apology", app.config["FLOWS_DIR"])
    flow_env = {
        "PUBLIC_BASE_URL": app.config.get("PUBLIC_BASE_URL") or "",
        **app.config["FLOW_ENV"],
    }
    app.extensions["omnivoice.catalog"] = catalog
    app.extensions["omnivoice.store"] = store
    app.extensions["omnivoice.events"] = events
    handoff_webhooks.target_of(app.config)  # a bad URL or secret is refused at start-up
    # The consoles' blocking reads get a client of their own with a long socket timeout (see
    # context.agent_feed); a test's REDIS_CLIENT or the demo's stand-in serves both.
    feed_reader = connection
    if app.config["REDIS_URL"] and not app.config.get("REDIS_CLIENT"):
        feed_reader = connect(app.config["REDIS_URL"], FEED_READ_TIMEOUT, app.config["DEV_MODE"])
    feed = AgentFeed(connection, keys, reader=feed_reader)
    handoffs = HandoffStore(connection, keys, feed, app.config["HANDOFF_TTL"])
    app.extensions["omnivoice.feed"] = feed
    app.extensions["omnivoice.handoffs"] = handoffs
    clock = app.config.get("CLOCK") or time.time
    versions = FlowVersions(catalog, store)
    limits = CodeLimits(floor=app.config["RESUME_CODE_FAILURES_PER_MINUTE"])
    service = ConversationService(
        catalog,
        store,
        HttpFetcher(local_app=app, resolver=app.config.get("DATA_DIP_RESOLVER")),
        twiml.VoiceRenderer(voice.answer_url, app.config["TASKROUTER_WORKFLOW_SID"]),
        env=flow_env,
        clock=clock,
        versions=versions,
        codes=ResumeCodes(store, versions, clock, limits),
        sinks=(
            LogSink(logs.QuickInfo(calls_log)),
            metrics.MetricsSink(),
            FeedSink(handoffs),
            *app.config.get("EVENT_SINKS", ()),
        ),
        turn_budget=app.config["WEBHOOK_BUDGET_SECONDS"],
    )
    app.extensions["omnivoice.calls"] = service
    tokens = OutboundTokens(app.config["SECRET_KEY"], connection, keys)
    history_db = _history_database(app)
    twilio = _twilio_client(app)

    # Twilio's webhooks are served in front of Flask (see webhooks.front); ProxyFix goes outside
    # both, so they see the same forwarded scheme and host.
    edge = front.TwilioFront(
        app.wsgi_app,
        front.FrontSettings(
            auth_token=app.config.get("TWILIO_AUTH_TOKEN"),
            dev_mode=bool(app.config["DEV_MODE"]),
            public_base_url=app.config.get("PUBLIC_BASE_URL"),
        ),
    )
    voice_views = voice.register(
        edge,
        service,
        voice.VoiceSettings(
            steps=range(INCOMING_STEP, MAX_STEP + 1),
            default_region=app.config["DEFAULT_REGION"],
            fallback_number=app.config.get("FALLBACK_NUMBER"),
            fallback_queue=app.config.get("FALLBACK_QUEUE"),
            tokens=tokens,
        ),
    )
    transfer_webhooks.register(edge, voice_views, handoffs)
    recording_webhooks.register(edge, voice_views)
    texts = InboundTexts(
        service, TextReplies(connection, keys, store.codec), history_db, sms_text.SmsRenderer()
    )
    sms.register(edge, texts, app.config["DEFAULT_REGION"])
    app.extensions["omnivoice.texts"] = texts
    sms_status.register(edge, service)
    app.extensions["omnivoice.front"] = edge
    app.extensions["omnivoice.outbound"] = OutboundService(
        catalog,
        tokens,
        history_db,
        events,
        twilio,
        OutboundSettings(
            from_number=app.config.get("TWILIO_PHONE_NUMBER"),
            public_base_url=app.config.get("PUBLIC_BASE_URL"),
            quiet_hours=app.config["OUTBOUND_QUIET_HOURS"],
            per_second=app.config["OUTBOUND_PER_SECOND"],
            default_region=app.config["DEFAULT_REGION"],
        ),
        clock=clock,
    )
    app.register_blueprint(outbound_api.bp)
    app.register_blueprint(handoffs_api.bp)
    console.register(app, history_db, twilio)  # /agent and `flask --app app agents`
    pages.register(app)  # /p/<token>: pages behind signed links
    if app.config["TRUST_PROXY"]:
        hops = app.config["TRUST_PROXY"]
        app.wsgi_app = ProxyFix(edge, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)  # type: ignore[method-assign]
    else:
        app.wsgi_app = edge  # type: ignore[method-assign]

    @app.get("/healthz")
    def healthz() -> Response:
        checked = health.report(
            connection, store.keys, catalog, unshared=unfit, stream=events, consumers=CONSUMERS
        )
        return Response(checked.text, checked.status, mimetype="text/plain")

    metrics.install(app)
    if demo_api_wanted(app.config):
        app.register_blueprint(demo_api.bp)
    app.cli.add_command(flows)
    app.cli.add_command(simulated_call)
    app.cli.add_command(history_cli.db)
    app.cli.add_command(history_cli.worker)
    app.cli.add_command(history_cli.customers)
    app.cli.add_command(outbound_cli.outbound)
    if app.config["HISTORY_IN_PROCESS"]:
        history = InProcessWriter(app.config["DATABASE_URL"], events)
        history.start()
        app.extensions["omnivoice.history"] = history
    webhooks = webhook_runner.build(app.config, events, "thread")
    if webhooks is not None and app.config["HANDOFF_WEBHOOK_IN_PROCESS"]:
        app.extensions["omnivoice.webhooks"] = webhook_runner.WebhookThread(webhooks).start()
    outbox = None
    if app.config["DEV_MODE"]:  # the demo: texts and emails with nowhere to go are kept
        outbox = app.config.get("DEV_OUTBOX") or DevOutbox(clock)
        dev_outbox.register(app, outbox)
    jobs = jobs_runtime.build(
        app.config, connection, keys, events, sealer, service, history_db, twilio, outbox
    )
    if jobs is not None:
        app.extensions["omnivoice.jobs"] = jobs
        if app.config["JOBS_IN_PROCESS"]:  # the demo's queue: a worker thread and the relay
            jobs.start(worker_threads=1)
    app.cli.add_command(keys_cli.keys)
    return app


app = create_app()
# What start-up built (flows, compiled templates, schemas, libraries) lives as long as the worker:
# keep it out of the garbage collector's full passes, which otherwise walk all of it every few
# thousand webhooks and show up as latency spikes.
gc.freeze()
