"""``flask --app app db ...`` and ``flask --app app worker``: the history database and its writer.

``db upgrade [REVISION]`` migrates ``DATABASE_URL`` to the newest (or the given) revision,
``db downgrade REVISION`` back (``base``: empty), ``db current`` prints where it is. ``worker``
runs the history writer, and beside it in threads the handoff webhook when
``HANDOFF_WEBHOOK_URL`` is set and the job queue (the outbox relay and a Dramatiq worker sending
texts and emails, see :mod:`jobs.runtime`), until SIGTERM or Ctrl-C (``--once``: until the
stream is caught up and the queue is empty).
``customers export SUBJECT`` prints everything held about a customer as JSON and ``customers
erase SUBJECT`` deletes it (see :mod:`context.history.rights`).
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.orm import Session

from context.history import consents, database, merges, rights, runtime
from context.history.models import Customer, IdentityKind
from conversation import webhook_runner

db = AppGroup("db", help="Migrate the customer history database (DATABASE_URL).")


@db.command("upgrade")
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Migrate the database up to REVISION (default: the newest)."""
    engine = database.open_engine(current_app.config["DATABASE_URL"])
    database.upgrade(engine, revision)
    click.echo(f"history database at revision {database.current(engine)}")


@db.command("downgrade")
@click.argument("revision")
def downgrade(revision: str) -> None:
    """Migrate the database down to REVISION (base: empty)."""
    engine = database.open_engine(current_app.config["DATABASE_URL"])
    database.downgrade(engine, revision)
    click.echo(f"history database at revision {database.current(engine) or 'base'}")


@db.command("current")
def current() -> None:
    """Print the database's revision and the newest one."""
    engine = database.open_engine(current_app.config["DATABASE_URL"])
    click.echo(f"at {database.current(engine) or 'base'}, newest {database.head()}")


@click.command("worker")
@with_appcontext
@click.option("--once", is_flag=True, help="Record what is in the stream, then exit.")
def worker(once: bool) -> None:
    """Run the history writer (the event stream, recorded in SQL) and the handoff webhook."""
    stream = current_app.extensions["omnivoice.events"]
    writer, engine = runtime.build(current_app.config["DATABASE_URL"], stream, "worker")
    try:
        database.require_current(engine)
    except database.SchemaBehind as exc:
        raise click.ClickException(str(exc)) from None
    webhooks = webhook_runner.build(current_app.config, stream, "worker")
    jobs = current_app.extensions.get("omnivoice.jobs")
    if once:
        click.echo(f"recorded {writer.drain()} event(s)")
        if webhooks is not None:
            click.echo(f"handled {webhooks.drain()} event(s) for the handoff webhook")
        if jobs is not None:
            click.echo(f"queued {jobs.relay().drain()} event(s)' messages")
            jobs.finish_queue()
        return
    stop = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    beside = None
    if webhooks is not None:  # one signal stops both
        beside = webhook_runner.WebhookThread(webhooks, stop).start()
        click.echo(f"handoff webhooks to {webhooks.target.host} running")
    if jobs is not None and not jobs.running:
        jobs.start()
        click.echo("job queue (outbox relay and message worker) running")
    nice = int(current_app.config.get("HISTORY_WRITER_NICE", 0))
    if nice:
        # Linux keeps a nice value per thread: only this one (the writer, started last) yields.
        os.nice(nice)
    click.echo(f"history writer {writer.consumer} running (nice {nice})")
    writer.run(stop)
    if beside is not None:
        beside.close()
    if jobs is not None:
        jobs.close()
    engine.dispose()


customers = AppGroup(
    "customers", help="Data rights: export or erase what is held about a customer."
)


@customers.command("export")
@click.argument("subject")
def export(subject: str) -> None:
    """Print everything held about SUBJECT (a phone number or email address) as JSON."""
    with _subject(subject) as (db, customer):
        document = rights.export(db, customer, subject)
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


@customers.command("erase")
@click.argument("subject")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase(subject: str, yes: bool) -> None:
    """Erase SUBJECT (a phone number or email address) from history, sessions and the stream."""
    if not yes:
        click.confirm(f"Erase everything held about {subject}?", abort=True)
    with _subject(subject) as (db, customer):
        counts = rights.erase(
            db,
            customer,
            subject,
            current_app.extensions["omnivoice.store"],
            current_app.extensions["omnivoice.events"],
        )
    click.echo("erased: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()))


@contextmanager
def _subject(text: str) -> Iterator[tuple[Session, Customer]]:
    """The customer ``text`` names, in a transaction committed when the block ends."""
    try:
        kind, value = rights.subject_of(text, current_app.config["DEFAULT_REGION"])
    except rights.UnknownSubject as exc:
        raise click.ClickException(str(exc)) from None
    engine = database.open_engine(current_app.config["DATABASE_URL"])
    try:
        with database.sessions(engine).begin() as db:
            try:
                customer = rights.find(db, kind, value)
            except rights.UnknownSubject as exc:
                raise click.ClickException(str(exc)) from None
            yield db, customer
    finally:
        engine.dispose()


@customers.command("consent")
@click.argument("subject")
@click.option("--channel", type=click.Choice(["voice", "sms", "email"]), required=True)
@click.option("--purpose", required=True, help="e.g. service, reminders, marketing")
@click.option("--withdraw", is_flag=True, help="Record a no instead of a yes.")
@click.option("--source", default="command line", show_default=True, help="Where it was given.")
def consent(subject: str, channel: str, purpose: str, withdraw: bool, source: str) -> None:
    """Record SUBJECT's consent (or its withdrawal) to be contacted first."""
    try:
        kind, value = rights.subject_of(subject, current_app.config["DEFAULT_REGION"])
    except rights.UnknownSubject as exc:
        raise click.ClickException(str(exc)) from None
    if kind != IdentityKind.PHONE:
        raise click.ClickException("consent is recorded for phone numbers")
    engine = database.open_engine(current_app.config["DATABASE_URL"])
    try:
        with database.sessions(engine).begin() as db:
            consents.record(db, value, channel, purpose, not withdraw, source, datetime.now(UTC))
    finally:
        engine.dispose()
    click.echo(f"{'withdrawn' if withdraw else 'granted'}: {purpose} by {channel}")


@customers.command("merge")
@click.argument("source")
@click.argument("target")
@click.option("--reason", default="asked on the command line", show_default=True)
def merge_customers(source: str, target: str, reason: str) -> None:
    """Merge the customer of SOURCE into the customer of TARGET (phone numbers or emails)."""
    engine = database.open_engine(current_app.config["DATABASE_URL"])
    try:
        with database.sessions(engine).begin() as db:
            found = [_find(db, text) for text in (source, target)]
            try:
                record = merges.merge(db, found[0], found[1], reason, datetime.now(UTC))
            except merges.MergeRefused as exc:
                raise click.ClickException(str(exc)) from None
            moved = ", ".join(f"{len(ids)} {name}" for name, ids in record.moved.items())
            click.echo(f"merge {record.id}: moved {moved} (undo: customers unmerge {record.id})")
    finally:
        engine.dispose()


@customers.command("unmerge")
@click.argument("merge_id", type=int)
def unmerge_customers(merge_id: int) -> None:
    """Undo merge MERGE_ID: everything it moved goes back."""
    engine = database.open_engine(current_app.config["DATABASE_URL"])
    try:
        with database.sessions(engine).begin() as db:
            try:
                merges.undo(db, merge_id, datetime.now(UTC))
            except merges.MergeRefused as exc:
                raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(f"merge {merge_id} undone")


def _find(db: Session, text: str) -> Customer:
    try:
        kind, value = rights.subject_of(text, current_app.config["DEFAULT_REGION"])
        return rights.find(db, kind, value)
    except rights.UnknownSubject as exc:
        raise click.ClickException(str(exc)) from None
