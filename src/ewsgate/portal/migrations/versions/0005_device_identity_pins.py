"""Device identity pins (EWS certificate SHA-256, on-link MAC) and their change log.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 18:35:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ewsgate.portal.store.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = ewsgate.portal.store.types.UTCDateTime(timezone=True)
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pin_ews_cert_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("pin_mac", sa.String(length=17), nullable=True))
        batch_op.add_column(sa.Column("pins_learned_at", when, nullable=True))
    op.create_table(
        "device_pin_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("dealer_id", sa.Integer(), nullable=False),
        sa.Column("at", when, nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("user_email", sa.String(length=320), nullable=True),
        sa.Column("old_ews_cert_sha256", sa.String(length=64), nullable=True),
        sa.Column("old_mac", sa.String(length=17), nullable=True),
        sa.Column("new_ews_cert_sha256", sa.String(length=64), nullable=True),
        sa.Column("new_mac", sa.String(length=17), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["dealer_id"], ["dealers.id"],
                                name=op.f("fk_device_pin_events_dealer_id_dealers"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"],
                                name=op.f("fk_device_pin_events_device_id_devices"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_device_pin_events_user_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_pin_events")),
    )
    with op.batch_alter_table("device_pin_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_device_pin_events_device_id"), ["device_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("device_pin_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_pin_events_device_id"))
    op.drop_table("device_pin_events")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("pins_learned_at")
        batch_op.drop_column("pin_mac")
        batch_op.drop_column("pin_ews_cert_sha256")
