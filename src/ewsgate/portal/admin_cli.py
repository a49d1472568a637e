"""``ewsgate admin ...`` and ``ewsgate db upgrade``: operator commands on the portal database.

Each command resolves the database (``--database-url``, else SQLite in ``--data-dir``),
applies the migrations (idempotent, so a fresh install needs no separate step), does its one
thing in one transaction through the service layer, and prints the result. Secrets (API tokens,
relay secrets) are printed once and stored only as hashes. Errors print what was wrong and
exit with status 1 (bad input) or 2 (configuration).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select

from ewsgate.config import ConfigError
from ewsgate.portal.services import NotFound, ServiceError, audit, relays, users
from ewsgate.portal.services.access import actor_for
from ewsgate.portal.services.validation import clean_email, clean_int
from ewsgate.portal.store.db import Database, DatabaseUrlError, default_database_url, upgrade
from ewsgate.portal.store.models import User

__all__ = ["create_relay", "create_token", "create_user", "database_url_of", "db_upgrade",
           "rotate_kek"]

T = TypeVar("T")


def database_url_of(values: dict[str, Any]) -> str:
    """``--database-url``, else the SQLite file in ``--data-dir``."""
    url = values.get("database_url")
    if url:
        return str(url)
    return default_database_url(Path(values.get("data_dir") or "./data/portal"))


def _run(values: dict[str, Any], work: Callable[[Database], Awaitable[T]],
         show: Callable[[T], None]) -> int:
    async def main() -> T:
        url = database_url_of(values)
        await upgrade(url)
        database = Database(url, pool=False)
        try:
            return await work(database)
        finally:
            await database.dispose()

    try:
        result = asyncio.run(main())
    except DatabaseUrlError as exc:
        raise ConfigError(f"--database-url: {exc}") from None
    except ServiceError as exc:
        where = f" (--{exc.field.replace('_', '-')})" if exc.field else ""
        print(f"error{where}: {exc.message} [{exc.code}]", file=sys.stderr)
        return 1
    show(result)
    return 0


def db_upgrade(values: dict[str, Any]) -> int:
    """Apply the migrations up to the newest."""
    url = database_url_of(values)
    try:
        asyncio.run(upgrade(url))
    except DatabaseUrlError as exc:
        raise ConfigError(f"--database-url: {exc}") from None
    print(f"database is up to date: {_redacted(url)}")
    return 0


def create_user(values: dict[str, Any]) -> int:
    """Create a user (or add a role to an existing one)."""
    scope = values.get("scope")

    async def work(database: Database) -> tuple[User, str]:
        customer_id = None if scope in (None, "") else clean_int("scope", scope, low=1,
                                                                 high=2**31 - 1)
        async with database.transaction() as session:
            user = await users.provision_user(session, email=values["email"],
                                              password=values["password"],
                                              role=values.get("role") or "viewer",
                                              customer_id=customer_id, name=values.get("name"))
            actor = await actor_for(session, user)
            roles = ", ".join(f"{a.role} on " + (f"customer {a.customer_id}"
                                                 if a.customer_id else "the whole dealer")
                              for a in actor.assignments)
            return user, roles

    return _run(values, work, lambda r: print(f"user {r[0].email} (id {r[0].id}): {r[1]}"))


def create_token(values: dict[str, Any]) -> int:
    """Create a personal API token for ``--email`` and print it (stdout: the token only)."""

    async def work(database: Database) -> str:
        email = clean_email("email", values["email"])
        async with database.transaction() as session:
            user = await session.scalar(select(User).where(User.email == email))
            if user is None:
                raise NotFound(f"no user with e-mail {email}; create it with "
                                     "ewsgate admin create-user", field="email")
            issued = await users.create_api_token(session, await actor_for(session, user,
                                                                           via="cli"),
                                                  values.get("token_name") or "cli")
            return issued.token

    return _run(values, work, print)


def create_relay(values: dict[str, Any]) -> int:
    """Register a relay node and print its credentials (TOML for ``ewsgate relay``)."""
    tunnel = values.get("tunnel_url")

    async def work(database: Database) -> relays.RegisteredRelay:
        async with database.transaction() as session:
            return await relays.register_relay(
                session, name=values["name"], public_domain=values["public_domain"],
                public_port=values.get("public_port"),
                tunnel_address=str(tunnel) if tunnel is not None else None)

    def show(registered: relays.RegisteredRelay) -> None:
        relay = registered.relay
        print(f"# relay {relay.name!r} registered; the secret is shown only now.")
        print("# Put these in the relay's config file, or set EWSGATE_RELAY_ID and "
              "EWSGATE_RELAY_SECRET.")
        print("[relay]")
        print(f'relay-id = "{relay.id}"')
        print(f'relay-secret = "{registered.secret}"')
        print(f'domain = "{relay.public_domain}"')

    return _run(values, work, show)


def rotate_kek(values: dict[str, Any]) -> int:
    """Add a new key-encryption key to ``DATA_DIR/keys`` and re-seal every stored SNMP secret
    with it. Older key files stay (values sealed with them still open); once this has run on
    the database they may be removed."""
    from ewsgate.portal.store.keyring import KeyringError, rotate
    from ewsgate.portal.store.sealed import reseal_all

    data_dir = Path(values.get("data_dir") or "./data/portal")

    async def main() -> tuple[str, int]:
        url = database_url_of(values)
        await upgrade(url)
        keyring = rotate(data_dir)
        database = Database(url, pool=False, keyring=keyring)
        try:
            count = await reseal_all(database.engine)
            async with database.transaction() as session:
                await audit.record(session, "key_encryption_key.rotate", actor=audit.SYSTEM,
                                   target_id=keyring.current,
                                   after={"kid": keyring.current, "resealed_rows": count})
            return keyring.current, count
        finally:
            await database.dispose()

    try:
        current, count = asyncio.run(main())
    except DatabaseUrlError as exc:
        raise ConfigError(f"--database-url: {exc}") from None
    except KeyringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"key-encryption key {current} is now current in {data_dir / 'keys'}; re-sealed "
          f"{count} rows. Copy {data_dir / 'keys'} to every portal replica.")
    return 0


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url
