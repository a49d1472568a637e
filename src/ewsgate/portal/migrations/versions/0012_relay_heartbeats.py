"""Relay heartbeats: when each relay last reported, whether it is draining and until when.

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-04 19:45:00

Expand-only: three nullable columns; a relay of the previous version (which never heartbeats)
keeps ``heartbeat_at`` NULL and is placed only when no heartbeating relay is alive.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ewsgate.portal.store.types

revision: str = "0012"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = ewsgate.portal.store.types.UTCDateTime(timezone=True)
    with op.batch_alter_table("relays") as batch:
        batch.add_column(sa.Column("heartbeat_at", when, nullable=True))
        batch.add_column(sa.Column("relay_state", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("drain_deadline", when, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("relays") as batch:
        batch.drop_column("drain_deadline")
        batch.drop_column("relay_state")
        batch.drop_column("heartbeat_at")
