"""A column type that stores text sealed with the portal's keyring (see :mod:`.keyring`).

``SealedText("devices.snmp_v3_auth_key")`` encrypts on the way in and decrypts on the way
out, so services read and write plain strings and only ciphertext reaches the database. The
keyring belongs to the engine: :func:`bind_keyring` attaches one to a
:class:`~ewsgate.portal.store.db.Database`'s dialect (each engine has its own dialect object), so
two databases in one process (tests) never share keys and nothing is a module-level setting.
An engine without a keyring refuses to store or read a sealed value with an error that says so
(no silent plaintext).

:func:`reseal_all` re-encrypts every sealed column with the current key: values stored before
sealing existed (plaintext) and values sealed with an older key after :func:`~.keyring.rotate`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, bindparam, select, type_coerce, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import TypeDecorator

from ewsgate.portal.store.keyring import Keyring, KeyringError

__all__ = ["SEALED_COLUMN_LENGTH", "SealedText", "bind_keyring", "keyring_of", "reseal_all"]

#: room for a 128-character secret once sealed and base64-encoded
SEALED_COLUMN_LENGTH = 512
_ATTRIBUTE = "ewsgate_keyring"


def bind_keyring(engine: AsyncEngine, keyring: Keyring) -> None:
    """Seal and open this engine's :class:`SealedText` columns with ``keyring``."""
    setattr(engine.sync_engine.dialect, _ATTRIBUTE, keyring)


def keyring_of(dialect: Dialect) -> Keyring:
    keyring = getattr(dialect, _ATTRIBUTE, None)
    if not isinstance(keyring, Keyring):
        raise KeyringError("this database has no key-encryption keyring bound, so SNMP secrets "
                           "can be neither stored nor read; open it through the portal (which "
                           "loads DATA_DIR/keys) or bind one with bind_keyring()")
    return keyring


class SealedText(TypeDecorator[str]):
    """Text encrypted at rest with AES-256-GCM; ``context`` is the column's name."""

    impl = String(SEALED_COLUMN_LENGTH)
    cache_ok = True

    def __init__(self, context: str) -> None:
        super().__init__()
        self.context = context

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        if value is None or value == "":
            return value
        return keyring_of(dialect).seal(value, context=self.context)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or value == "":
            return None if value is None else ""
        return keyring_of(dialect).open(str(value), context=self.context)


async def reseal_all(engine: AsyncEngine) -> int:
    """Check that every stored sealed value opens, and re-encrypt those not sealed with the
    current key; the number of rows re-encrypted. Raises :class:`KeyringError` on a value the
    keyring cannot open (nothing is written then)."""
    from ewsgate.portal.store.models import Base

    keyring = keyring_of(engine.sync_engine.dialect)
    changed = 0
    async with engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            sealed = [(c, c.type) for c in table.columns if isinstance(c.type, SealedText)]
            if not sealed:
                continue
            key = next(iter(table.primary_key.columns))
            query = select(key, *[_raw(c) for c, _ in sealed])
            # rows to rewrite, grouped by which columns change (one executemany per group)
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for row in (await connection.execute(query)).all():
                values: dict[str, Any] = {}
                for (column, kind), stored in zip(sealed, row[1:], strict=True):
                    if not stored:
                        continue
                    # every value is opened, also those of the current key: a portal with
                    # the wrong key files finds out here, at start, not per request
                    plain = keyring.open(stored, context=kind.context)
                    if not keyring.is_current(stored):
                        values[f"v_{column.name}"] = keyring.seal(plain, context=kind.context)
                if values:
                    names = tuple(sorted(name[2:] for name in values))
                    groups.setdefault(names, []).append({"k": row[0], **values})
            for names, rows in groups.items():
                statement = update(table).where(key == bindparam("k")).values(
                    {table.c[name]: bindparam(f"v_{name}", type_=String(SEALED_COLUMN_LENGTH))
                     for name in names})
                for start in range(0, len(rows), 1000):
                    await connection.execute(statement, rows[start:start + 1000])
                changed += len(rows)
    return changed


def _raw(column: Any) -> Any:
    """The column as stored (ciphertext), bypassing :class:`SealedText`."""
    return type_coerce(column, String(SEALED_COLUMN_LENGTH)).label(column.name)

