"""Fixtures for the remote session tests (see rt_world.py and rt_http.py)."""

from sessions.rt_http import portal
from sessions.rt_world import (
    FakeClock,
    RtWorld,
    rt,
    rt_database_url,
    rt_pg_schema_url,
    rt_sqlite_template,
)

__all__ = ["FakeClock", "RtWorld", "portal", "rt", "rt_database_url", "rt_pg_schema_url",
           "rt_sqlite_template"]
