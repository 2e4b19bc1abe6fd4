"""Customer history in SQL: who the customer is, how we know, and every interaction on every channel.

Redis holds the live session; this package holds what must last. :mod:`.models` are the tables,
:mod:`.database` opens them (SQLite file by default, PostgreSQL in production) and runs the
Alembic migrations, :mod:`.customers` resolves a contact's identity to one customer, and
:mod:`.writer` is the history writer: it reads the event stream with a consumer group and
records it in batches (:mod:`.batch` writes one), so a webhook never waits on SQL.
"""
