"""The initial store schema: meta, the event log, snapshots and API keys.

Written out column by column rather than from ``store.py``'s ``MetaData`` on purpose: a
revision is history and must keep creating exactly this schema when the code's tables
change later (tests/unit/adapters/test_store.py checks the two agree today).

``seq`` is ``INTEGER`` on SQLite (an alias of the rowid: one b-tree instead of a table plus
a separate primary-key index) and ``BIGINT`` elsewhere.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the four tables."""
    op.create_table(
        "meta",
        sa.Column("key", sa.String(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=True),
        sa.Column("out", sa.Text(), nullable=False),
        sa.Column("chain", sa.String(64), nullable=False),
    )
    op.create_index("ix_events_event_id", "events", ["event_id"], unique=True)
    op.create_table(
        "snapshots",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=False),
        sa.Column("state_hash", sa.String(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("scopes", sa.String(), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(128), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=True),
    )


def downgrade() -> None:
    """Drop the four tables (the log with them: only for tests of migrations)."""
    op.drop_table("api_keys")
    op.drop_table("snapshots")
    op.drop_index("ix_events_event_id", table_name="events")
    op.drop_table("events")
    op.drop_table("meta")
