"""``ewsgate admin signing-keys``: list, rotate and retire the portal's ES256 signing keys.

Rotation without downtime (see docs/oauth.md, *Keys*)::

    ewsgate admin signing-keys --rotate          # a new key signs from now on; both published
    # … wait at least 30 minutes (the longest any token or tunnel ticket lives) …
    ewsgate admin signing-keys --retire=OLD_KID  # stop publishing the old key

Running portals pick the change up on their next signature or JWKS request (the key directory
is re-read when it changes); relays re-fetch the JWKS when they meet an unknown ``kid``. The
command also writes the change to the database (``--database-url``), from which every other
replica takes it within a second (:mod:`.key_sync`), and first takes in the keys other replicas
made, so a key made elsewhere can be retired here.

A ``kid`` is an RFC 7638 thumbprint in base64url, so about one in 64 begins with ``-``; the
``--retire=KID`` form is the one that always parses, and it is the form this module prints.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ewsgate.config import ConfigError
from ewsgate.portal.oauth.key_sync import SigningKeySync
from ewsgate.portal.oauth.keys import SigningKeys
from ewsgate.portal.store.db import Database, default_database_url

__all__ = ["signing_keys"]


def signing_keys(values: dict[str, Any]) -> int:
    """The CLI handler: ``--rotate``, ``--retire=KID``, or neither to list the keys."""
    data_dir = Path(values["data_dir"])
    ring = SigningKeys.open(data_dir)
    url = values.get("database_url") or default_database_url(data_dir)
    asyncio.run(_with_database(url, ring, pull=True))
    try:
        return _change(values, ring)
    finally:
        asyncio.run(_with_database(url, ring, pull=False))


async def _with_database(url: str, ring: SigningKeys, *, pull: bool) -> None:
    database = Database(url, pool=False)
    try:
        await database.upgrade()
        sync = SigningKeySync(database, ring)
        if pull:
            await sync.sync(ensure_key=False)
        else:
            await sync.push(ring.entries())
    finally:
        await database.dispose()


def _change(values: dict[str, Any], ring: SigningKeys) -> int:
    if values.get("rotate") and values.get("retire"):
        raise ConfigError("give --rotate or --retire=KID, not both (retire only after the "
                          "new key has signed for 30 minutes)")
    if values.get("rotate"):
        key = ring.rotate()
        _audit(values, "signing_key.rotate", key.kid)
        print(f"new signing key {key.kid} is active; the previous keys stay published. "
              "Retire a previous key with --retire=KID after 30 minutes.")
    elif values.get("retire"):
        kid = str(values["retire"])
        try:
            ring.retire(kid)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"--retire={kid}: {exc.args[0]}") from None
        _audit(values, "signing_key.retire", kid)
        print(f"signing key {kid} is retired and no longer published")
    active = ring.active
    for key in ring.published():
        mark = "active" if key.kid == active.kid else "published"
        print(f"{key.kid}  {mark:9}  created {key.created_at:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def _audit(values: dict[str, Any], action: str, kid: str) -> None:
    """Record the key change in the portal's audit trail (the CLI is the ``system`` actor)."""
    import asyncio

    from ewsgate.portal.admin_cli import database_url_of
    from ewsgate.portal.services import audit
    from ewsgate.portal.store.db import Database, upgrade

    async def write() -> None:
        url = database_url_of(values)
        await upgrade(url)
        database = Database(url, pool=False)
        try:
            async with database.transaction() as session:
                await audit.record(session, action, actor=audit.SYSTEM, target_id=kid,
                                   after={"kid": kid})
        finally:
            await database.dispose()

    asyncio.run(write())
