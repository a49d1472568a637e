"""Fixtures for the notification tests: the Remote Technician world (tests/sessions) and
real receivers on loopback (receivers.py)."""

from sessions.rt_http import portal
from sessions.rt_world import rt, rt_database_url, rt_pg_schema_url, rt_sqlite_template

__all__ = ["portal", "rt", "rt_database_url", "rt_pg_schema_url", "rt_sqlite_template"]
