"""``flask --app app db ...`` and ``flask --app app worker``: the history database and its writer.

``db upgrade [REVISION]`` migrates ``DATABASE_URL`` to the newest (or the given) revision,
``db downgrade REVISION`` back (``base``: empty), ``db current`` prints where it is. ``worker``
runs the history writer until SIGTERM or Ctrl-C (``--once``: until the stream is caught up).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from context.history import database, runtime

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
    """Run the history writer: the event stream, recorded in SQL."""
    stream = current_app.extensions["omnivoice.events"]
    writer, engine = runtime.build(current_app.config["DATABASE_URL"], stream, "worker")
    try:
        database.require_current(engine)
    except database.SchemaBehind as exc:
        raise click.ClickException(str(exc)) from None
    if once:
        click.echo(f"recorded {writer.drain()} event(s)")
        return
    stop = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"history writer {writer.consumer} running")
    writer.run(stop)
    engine.dispose()
