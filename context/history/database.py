"""Opening the history database and migrating it with Alembic.

``DATABASE_URL`` names it: a SQLite file by default (``sqlite:///omnivoice.db``, created on first
use by the embedded demo), PostgreSQL in production (``postgresql+psycopg://user@host/db``). The
schema is Alembic's (``migrations/`` at the top of the repository): ``flask --app app db
upgrade`` brings a database to the newest revision, and the history writer refuses to start on
a database that is behind, saying which command to run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from ivr.errors import OmnivoiceError

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


class SchemaBehind(OmnivoiceError):
    """The history database is not at the newest migration."""


def open_engine(url: str, **options: Any) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys on and a write-ahead log.

    ``pool_pre_ping`` lets a writer that outlived a database restart find a live connection.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 15}, **options)

        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **options)


def sessions(engine: Engine) -> sessionmaker[Session]:
    """The session factory of ``engine`` (objects stay usable after commit)."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    """Alembic's configuration for ``engine``: our migrations, run on its connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` (default: the newest)."""
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base``: empty)."""
    command.downgrade(alembic_config(engine), revision)


def current(engine: Engine) -> str | None:
    """The revision the database is at (``None`` for an empty one)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head() -> str | None:
    """The newest revision of the migrations."""
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def require_current(engine: Engine) -> None:
    """Raise :class:`SchemaBehind` unless the database is at the newest revision."""
    at, newest = current(engine), head()
    if at != newest:
        raise SchemaBehind(
            f"the history database is at revision {at or 'empty'}, not {newest}: "
            "run flask --app app db upgrade"
        )
