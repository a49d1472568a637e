"""OAuth authorization codes (ewsgate.portal.oauth.models.AuthorizationCode).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 13:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ewsgate.portal.store.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = ewsgate.portal.store.types.UTCDateTime(timezone=True)
    op.create_table(
        "oauth_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("relay_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("code_challenge", sa.String(length=128), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("expires_at", when, nullable=False),
        sa.Column("redeemed_at", when, nullable=True),
        sa.Column("token_jti", sa.String(length=64), nullable=True),
        sa.Column("token_expires_at", when, nullable=True),
        sa.Column("revoked_at", when, nullable=True),
        sa.ForeignKeyConstraint(["relay_id"], ["relays.id"],
                                name=op.f("fk_oauth_codes_relay_id_relays"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["session_id"], ["remote_sessions.id"],
                                name=op.f("fk_oauth_codes_session_id_remote_sessions"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_oauth_codes_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_oauth_codes")),
    )
    with op.batch_alter_table("oauth_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oauth_codes_session_id"), ["session_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_oauth_codes_expires_at"), ["expires_at"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("oauth_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oauth_codes_expires_at"))
        batch_op.drop_index(batch_op.f("ix_oauth_codes_session_id"))
    op.drop_table("oauth_codes")
