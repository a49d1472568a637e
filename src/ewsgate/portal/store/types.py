"""Column types that behave the same on SQLite and PostgreSQL.

SQLite has no time-zone-aware timestamp: :class:`UTCDateTime` stores naive UTC on the way in
and hands back an aware UTC :class:`~datetime.datetime` on the way out, on both engines, so
comparisons with an injected clock never mix naive and aware values.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = ["Clock", "UTCDateTime", "utc_now"]


def utc_now() -> datetime:
    """The real clock: an aware UTC datetime. Pass another callable to inject a fake one."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime column; naive input is refused (a bug, not data)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UTCDateTime needs an aware datetime (use datetime.now(UTC))")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: A clock: returns an aware UTC datetime. Injected everywhere time matters.
Clock = Callable[[], datetime]
