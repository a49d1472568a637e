"""The authorization server's one table: issued authorization codes and what became of them.

A row is written when ``/oauth/authorize`` issues a code and is the whole memory of the code:
only the SHA-256 of the code is stored (a database reader cannot redeem it), with what it is
bound to — the client (relay), the session, the user, the exact redirect URI and the PKCE
challenge — and its expiry. ``redeemed_at`` is set atomically by the first redemption attempt
(``UPDATE … WHERE redeemed_at IS NULL``), so a code is good for one attempt only. The access
token issued from it is recorded by ``token_jti``; a second redemption attempt sets
``revoked_at``, which puts that ``jti`` on the denylist relays read with the session's status.

Rows whose code and token have both expired are pruned by
:meth:`ewsgate.portal.oauth.server.AuthorizationServer.prune`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ewsgate.portal.store.models import Base

__all__ = ["AuthorizationCode"]


class AuthorizationCode(Base):
    """One authorization code (by hash), its bindings, its single use and its token."""

    __tablename__ = "oauth_codes"
    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    relay_id: Mapped[int] = mapped_column(ForeignKey("relays.id", ondelete="CASCADE"))
    session_id: Mapped[str] = mapped_column(
        ForeignKey("remote_sessions.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(Text)
    code_challenge: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    redeemed_at: Mapped[datetime | None]
    token_jti: Mapped[str | None] = mapped_column(String(64))
    token_expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
