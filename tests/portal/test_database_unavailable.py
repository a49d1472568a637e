"""A database the portal cannot use right now is a 503 with Retry-After and a clear message,
not a 500: a real SQLite file, locked by another connection past the portal's busy timeout."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import httpx
import pytest
from portal_world import WORLD_PASSWORD, build_world

from ewsgate.portal.app import create_app
from ewsgate.portal.context import PortalConfig
from ewsgate.portal.store.db import Database


@pytest.fixture
def sqlite_file(database_url: str) -> Path:
    if not database_url.startswith("sqlite"):
        pytest.skip("locks a SQLite file; PostgreSQL's locks are not a file's")
    return Path(database_url.split("///", 1)[1])


async def test_a_locked_database_answers_503_with_retry_after(
        tmp_path: Path, database_url: str, sqlite_file: Path) -> None:
    database = Database(database_url, busy_timeout=0.2)
    world = await build_world(database)
    email = next(iter(world.emails.values()))
    login = {"email": email, "password": WORLD_PASSWORD}
    app = create_app(PortalConfig.from_values({"data_dir": tmp_path,
                                               "database_url": database_url}),
                     database=database)
    transport = httpx.ASGITransport(app=app)
    holder = sqlite3.connect(sqlite_file, timeout=0.1)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as http, \
                httpx.AsyncClient(transport=transport, base_url="http://portal.test") as browser:
            # before the lock the same request is an ordinary refusal (the database works)
            before = await http.post("/api/v1/auth/login", json=login)
            assert before.status_code == 200, before.text
            form = await browser.get("/login")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            assert csrf is not None, form.text[:500]
            holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
            locked = await http.post("/api/v1/auth/login", json=login)
            # the sign-in form (the web UI's own error pages are HTML)
            page = await browser.post("/login", data={**login, "csrf_token": csrf.group(1)},
                                      headers={"Origin": "http://portal.test",
                                               "Sec-Fetch-Site": "same-origin"})
            holder.rollback()
            after = await http.post("/api/v1/auth/login", json=login)
    finally:
        holder.close()
        await database.dispose()
    assert locked.status_code == 503, locked.text
    assert locked.headers["retry-after"] == "5"
    error = locked.json()["error"]
    assert error["code"] == "database_unavailable"
    assert "database is locked" in error["message"] and "retry" in error["message"]
    assert page.status_code == 503 and page.headers["retry-after"] == "5"
    assert "temporarily unavailable" in page.text and "<html" in page.text
    assert after.status_code == 200  # and back to normal once the lock is gone


def test_only_transient_database_failures_are_unavailable() -> None:
    from sqlalchemy import exc as sa_exc

    from ewsgate.portal.store.unavailable import unavailable_reason

    locked = sa_exc.OperationalError("INSERT …", {}, sqlite3.OperationalError(
        "database is locked"))
    assert unavailable_reason(locked) == "database is locked"
    bug = sa_exc.ProgrammingError("SELECT nope", {}, sqlite3.ProgrammingError("no such column"))
    assert unavailable_reason(bug) is None
    assert unavailable_reason(sa_exc.TimeoutError("pool")) is not None
    assert unavailable_reason(ValueError("x")) is None
