"""Tunnel reports: what agents report about relays, per job (models.TunnelReport).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 18:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ewsgate.portal.store.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = ewsgate.portal.store.types.UTCDateTime(timezone=True)
    op.create_table(
        "tunnel_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("installation_id", sa.Integer(), nullable=True),
        sa.Column("at", when, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("budget", sa.String(length=32), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"],
                                name=op.f("fk_tunnel_reports_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tunnel_reports")),
    )
    with op.batch_alter_table("tunnel_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tunnel_reports_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tunnel_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tunnel_reports_job_id"))
    op.drop_table("tunnel_reports")
