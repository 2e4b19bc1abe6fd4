"""Alembic's environment: migrations run on the engine the caller passes (see
``context.history.database``), or on ``DATABASE_URL`` when Alembic is run by hand."""

from __future__ import annotations

import os

from alembic import context

from context.history.database import open_engine
from context.history.models import Base

target_metadata = Base.metadata


def run() -> None:
    engine = context.config.attributes.get("engine")
    if engine is None:
        engine = open_engine(os.environ.get("DATABASE_URL", "sqlite:///omnivoice.db"))
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying
            compare_type=True,
        )
        context.run_migrations()


run()
