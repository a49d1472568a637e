"""Revocation the relay obeys: installation revocations, certificate thumbprints, and an index
on ``remote_sessions.ended_at`` for the relays' event streams.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 18:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ewsgate.portal.store.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = ewsgate.portal.store.types.UTCDateTime(timezone=True)
    op.create_table(
        "installation_revocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("installation_id", sa.Integer(), nullable=False),
        sa.Column("revoked_at", when, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("thumbprint", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_installation_revocations")),
    )
    with op.batch_alter_table("installation_revocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_installation_revocations_installation_id"),
                              ["installation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_installation_revocations_revoked_at"),
                              ["revoked_at"], unique=False)
    with op.batch_alter_table("installations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cert_thumbprint", sa.String(length=64), nullable=True))
    with op.batch_alter_table("remote_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_remote_sessions_ended_at"), ["ended_at"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("remote_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_remote_sessions_ended_at"))
    with op.batch_alter_table("installations", schema=None) as batch_op:
        batch_op.drop_column("cert_thumbprint")
    with op.batch_alter_table("installation_revocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_installation_revocations_revoked_at"))
        batch_op.drop_index(batch_op.f("ix_installation_revocations_installation_id"))
    op.drop_table("installation_revocations")
