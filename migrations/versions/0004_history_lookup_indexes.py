"""Indexes for the history writer's per-batch look-ups that otherwise read whole tables.

A customer card reads the customer's identities (``identities.customer_id``) and the latest
notes agents wrote (``events`` of kind ``agent_note``): without these, both were sequential
scans, so every batch the writer committed cost more as the history grew.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

AGENT_NOTES = sa.text("kind = 'agent_note'")


def upgrade() -> None:
    op.create_index("ix_identities_customer", "identities", ["customer_id"])
    op.create_index(
        "ix_events_agent_notes",
        "events",
        ["interaction_id"],
        postgresql_where=AGENT_NOTES,
        sqlite_where=AGENT_NOTES,
    )


def downgrade() -> None:
    op.drop_index("ix_events_agent_notes", table_name="events")
    op.drop_index("ix_identities_customer", table_name="identities")
