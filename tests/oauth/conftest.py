"""Fixtures for the OAuth server tests: the same world as the session tests."""

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
