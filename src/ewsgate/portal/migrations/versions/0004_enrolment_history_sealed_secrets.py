"""Enrolment history (purpose, who asked, superseded tokens) and room for sealed SNMP secrets.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 18:40:00

Existing SNMP values stay readable (a value without the ``ewsk1:`` prefix is read as it is) and
are sealed with the portal's key the next time the portal starts.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ewsgate.portal.store.sealed
import ewsgate.portal.store.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEALED = ("snmp_community", "snmp_v3_auth_key", "snmp_v3_priv_key")
_OLD_LENGTH = {"snmp_community": 128, "snmp_v3_auth_key": 256, "snmp_v3_priv_key": 256}


def upgrade() -> None:
    when = ewsgate.portal.store.types.UTCDateTime(timezone=True)
    with op.batch_alter_table("enrolment_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purpose", sa.String(length=16), nullable=False,
                                      server_default="enrol"))
        batch_op.add_column(sa.Column("created_by_user_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("created_by_email", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", when, nullable=True))
        batch_op.add_column(sa.Column("issued_cert_serial", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("replaced_cert_serial", sa.String(length=64),
                                      nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_enrolment_tokens_created_by_user_id_users"), "users",
            ["created_by_user_id"], ["id"], ondelete="SET NULL")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        for name in _SEALED:
            batch_op.alter_column(name, existing_type=sa.String(length=_OLD_LENGTH[name]),
                                  type_=ewsgate.portal.store.sealed.SealedText(f"devices.{name}"),
                                  existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        for name in _SEALED:
            batch_op.alter_column(name, existing_type=sa.String(length=512),
                                  type_=sa.String(length=_OLD_LENGTH[name]),
                                  existing_nullable=True)
    with op.batch_alter_table("enrolment_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_enrolment_tokens_created_by_user_id_users"),
                                 type_="foreignkey")
        for name in ("replaced_cert_serial", "issued_cert_serial", "revoked_at",
                     "created_by_email", "created_by_user_id", "purpose"):
            batch_op.drop_column(name)
