"""Which database failures mean "unavailable right now, retry", as opposed to a bug.

A SQLite file locked past the busy timeout, a PostgreSQL server that is down, restarting or out
of connections, a lock or serialization conflict, a connection pool that is exhausted: none of
these is the request's fault nor a bug, and the transaction rolled back, so the honest answer
is 503 with ``Retry-After`` and a message saying so (:func:`unavailable_reason`). Everything
else stays a 500 ``internal_error``. The portal's error boundary
(:mod:`ewsgate.portal.api.errors`) is the one place that uses this.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

__all__ = ["RETRY_AFTER_SECONDS", "unavailable_reason"]

RETRY_AFTER_SECONDS = 5

#: SQLite's messages for a database it cannot use right now
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "unable to open",
                     "disk i/o error", "database or disk is full")
#: PostgreSQL SQLSTATEs (and classes) that pass: connection (08), resources (53), operator
#: intervention (57P01-57P03), lock not available, serialization failure, deadlock
_PG_TRANSIENT_CLASSES = ("08", "53")
_PG_TRANSIENT = frozenset({"57P01", "57P02", "57P03", "55P03", "40001", "40P01"})


def unavailable_reason(error: BaseException) -> str | None:
    """A short reason if ``error`` means the database is unavailable right now, else None."""
    if isinstance(error, sa_exc.TimeoutError):
        return "all database connections are busy"
    if not isinstance(error, sa_exc.DBAPIError):
        return None
    if error.connection_invalidated:
        return "the connection to the database was lost"
    original = error.orig
    state = _sqlstate(original)
    if state is not None and (state[:2] in _PG_TRANSIENT_CLASSES or state in _PG_TRANSIENT):
        return f"the database answered {state}: {str(original).splitlines()[0][:120]}"
    text = str(original).lower()
    for marker in _SQLITE_TRANSIENT:
        if marker in text:
            return marker
    if isinstance(original, OSError) or isinstance(
            getattr(original, "__cause__", None), OSError):
        return "the database cannot be reached"
    return None


def _sqlstate(original: BaseException | None) -> str | None:
    for candidate in (original, getattr(original, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str) and len(state) == 5:
            return state
    return None
