"""The signing keys of every portal replica kept in step through the database.

Each replica signs with the key ring in its own data directory (:mod:`.keys`: synchronous,
no database round trip per signature). :class:`SigningKeySync` merges that ring with the
``signing_keys`` table, both ways, as a union::

    database row  not in the directory  → written to the directory   (a key made elsewhere)
    directory key not in the database   → inserted                   (a key made here)
    retired on either side              → retired on both            (earliest time wins)

It runs when the portal starts (before the first key is made, so replicas that start on an
empty database agree on one key unless they start in the same instant — then both keys are
published and the newest signs), on every sweeper tick of every replica (about once a
second), and before ``/.well-known/jwks.json`` is answered — so a relay that meets a new
``kid`` and re-fetches the JWKS from any replica finds the key, wherever it was made. A
rotation on one replica (``ewsgate admin signing-keys --rotate``, which also writes to the
database) is thus seen by all within one sweeper tick.

The private halves sit in the database as JWK JSON: whoever can read the portal's database
can already change every user, role and session in it, so it is guarded like the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from joserfc.jwk import ECKey
from sqlalchemy import select, update

from ewsgate.portal.oauth.keys import SigningKey, SigningKeys
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import SigningKeyRow

__all__ = ["SigningKeySync"]


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return min(a, b)


class SigningKeySync:
    """Merges one replica's key directory with the database (see the module docstring)."""

    def __init__(self, database: Database, keys: SigningKeys) -> None:
        self._db = database
        self.keys = keys

    async def sync(self, *, ensure_key: bool = True) -> None:
        """Pull keys and retirements from the database, make a first key if there is none
        anywhere (``ensure_key``), and push what the database lacks."""
        async with self._db.transaction() as session:
            rows = {row.kid: row for row in (await session.scalars(select(SigningKeyRow))).all()}
        local = {key.kid: key for key in self.keys.entries()}
        for kid, row in rows.items():
            mine = local.get(kid)
            if mine is None:
                entry = SigningKey(kid, ECKey.import_key(json.loads(row.jwk)), row.created_at,
                                   row.retired_at)
                self.keys.store(entry)
                local[kid] = entry
            elif row.retired_at is not None and mine.retired_at != _earliest(
                    mine.retired_at, row.retired_at):
                entry = SigningKey(kid, mine.key, mine.created_at,
                                   _earliest(mine.retired_at, row.retired_at))
                self.keys.store(entry)
                local[kid] = entry
        if ensure_key and not any(k.retired_at is None for k in local.values()):
            made = self.keys.rotate()
            local[made.kid] = made
        await self.push(local.values(), rows)

    async def push(self, entries: Iterable[SigningKey],
                   known: dict[str, SigningKeyRow] | None = None) -> None:
        """Insert the keys the database lacks and record retirements it lacks."""
        from sqlalchemy.dialects import postgresql, sqlite

        items = list(entries)
        async with self._db.transaction() as session:
            if known is None:
                known = {row.kid: row for row in
                         (await session.scalars(select(SigningKeyRow))).all()}
            dialect_insert = (postgresql.insert if self._db.dialect == "postgresql"
                              else sqlite.insert)
            for entry in items:
                row = known.get(entry.kid)
                if row is None:
                    await session.execute(
                        dialect_insert(SigningKeyRow).values(
                            kid=entry.kid, created_at=entry.created_at,
                            retired_at=entry.retired_at,
                            jwk=json.dumps(dict(entry.key.as_dict(private=True))))
                        .on_conflict_do_nothing(index_elements=["kid"]))
                elif entry.retired_at is not None and row.retired_at is None:
                    await session.execute(
                        update(SigningKeyRow)
                        .where(SigningKeyRow.kid == entry.kid,
                               SigningKeyRow.retired_at.is_(None))
                        .values(retired_at=entry.retired_at))
