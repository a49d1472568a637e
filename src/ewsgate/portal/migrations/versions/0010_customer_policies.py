"""Customer policies and session requests; a session's mode and idle timeout.

Revision ID: 0010
Revises: 0011
Create Date: 2026-12-04 19:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ewsgate.portal.store.types

revision: str = "0010"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = ewsgate.portal.store.types.UTCDateTime(timezone=True)
    op.create_table(
        "customer_policies",
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("updated_at", when, nullable=False),
        sa.Column("updated_by", sa.String(length=320), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_customer_policies_customer_id_customers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_policies")),
    )
    op.create_table(
        "session_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dealer_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("device_name", sa.String(length=200), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("user_email", sa.String(length=320), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("ticket", sa.String(length=200), nullable=True),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("expires_at", when, nullable=False),
        sa.Column("decided_at", when, nullable=True),
        sa.Column("decided_by", sa.String(length=320), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["dealer_id"], ["dealers.id"],
                                name=op.f("fk_session_requests_dealer_id_dealers"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_session_requests_customer_id_customers"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"],
                                name=op.f("fk_session_requests_device_id_devices"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_session_requests_user_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_requests")),
    )
    with op.batch_alter_table("session_requests", schema=None) as batch_op:
        for column in ("dealer_id", "customer_id", "device_id", "user_id", "status"):
            batch_op.create_index(batch_op.f(f"ix_session_requests_{column}"), [column],
                                  unique=False)
    with op.batch_alter_table("remote_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mode", sa.String(length=16), nullable=False,
                                      server_default="full"))
        batch_op.add_column(sa.Column("idle_timeout_seconds", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("allow_panel", sa.Boolean(), nullable=False,
                                      server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("remote_sessions", schema=None) as batch_op:
        batch_op.drop_column("allow_panel")
        batch_op.drop_column("idle_timeout_seconds")
        batch_op.drop_column("mode")
    with op.batch_alter_table("session_requests", schema=None) as batch_op:
        for column in ("status", "user_id", "device_id", "customer_id", "dealer_id"):
            batch_op.drop_index(batch_op.f(f"ix_session_requests_{column}"))
    op.drop_table("session_requests")
    op.drop_table("customer_policies")
