"""Notifications: customer contacts (e-mails, signed webhook) and the delivery outbox
(models.CustomerContacts, models.Notification).

Revision ID: 0011
Revises: 0012
Create Date: 2026-12-04 19:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ewsgate.portal.store.sealed
import ewsgate.portal.store.types

revision: str = "0011"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = ewsgate.portal.store.types.UTCDateTime(timezone=True)
    op.create_table(
        "customer_contacts",
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("emails", sa.JSON(), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("webhook_secret",
                  ewsgate.portal.store.sealed.SealedText("customer_contacts.webhook_secret"),
                  nullable=True),
        sa.Column("updated_at", when, nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_customer_contacts_customer_id_customers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_contacts")),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dealer_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("source_customer_id", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", when, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", when, nullable=False),
        sa.Column("delivered_at", when, nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_notifications_customer_id_customers"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["dealer_id"], ["dealers.id"],
                                name=op.f("fk_notifications_dealer_id_dealers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_customer_id"), ["customer_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_notifications_dealer_id"), ["dealer_id"],
                              unique=False)
        batch_op.create_index("ix_notifications_status_next_attempt_at",
                              ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_status_next_attempt_at")
        batch_op.drop_index(batch_op.f("ix_notifications_dealer_id"))
        batch_op.drop_index(batch_op.f("ix_notifications_customer_id"))
    op.drop_table("notifications")
    op.drop_table("customer_contacts")
