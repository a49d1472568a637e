"""The operator commands through the real CLI: ``ewsgate db upgrade``, ``ewsgate admin
create-user / create-token / create-relay``, and ``ewsgate portal`` as a real process."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from portal_world import TEST_URL_ENV, pg_execute, with_schema
from sqlalchemy import inspect, select

from ewsgate.cli import main
from ewsgate.portal.services.credentials import hash_secret
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import ApiToken, Relay, RoleAssignment, User

pytestmark = pytest.mark.db


@pytest.fixture
def empty_database_url(tmp_path: Path) -> Iterator[str]:
    """An empty (not migrated) database: a new SQLite path or a new PostgreSQL schema."""
    base = os.environ.get(TEST_URL_ENV)
    if not base:
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'portal.sqlite3'}"
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    asyncio.run(pg_execute(base, f'CREATE SCHEMA "{schema}"'))
    try:
        yield with_schema(base, schema)
    finally:
        asyncio.run(pg_execute(base, f'DROP SCHEMA "{schema}" CASCADE'))


def _tables(url: str) -> set[str]:
    async def read() -> set[str]:
        database = Database(url, pool=False)
        try:
            async with database.engine.connect() as connection:
                return await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        finally:
            await database.dispose()

    return asyncio.run(read())


def _query(url: str, statement):  # type: ignore[no-untyped-def]
    async def read():  # type: ignore[no-untyped-def]
        database = Database(url, pool=False)
        try:
            async with database.transaction() as session:
                return list((await session.scalars(statement)).all())
        finally:
            await database.dispose()

    return asyncio.run(read())


def test_db_upgrade_creates_the_schema(empty_database_url: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert "devices" not in _tables(empty_database_url)
    assert main(["db", "upgrade", "--database-url", empty_database_url]) == 0
    assert "up to date" in capsys.readouterr().out
    assert {"devices", "users", "jobs", "job_log_entries", "alembic_version"} <= _tables(
        empty_database_url)
    assert main(["db", "upgrade", "--database-url", empty_database_url]) == 0  # idempotent


def test_db_upgrade_in_the_data_dir_by_default(tmp_path: Path) -> None:
    assert main(["db", "upgrade", "--data-dir", str(tmp_path / "data")]) == 0
    assert (tmp_path / "data" / "portal.sqlite3").exists()


def test_create_user_then_token(empty_database_url: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    url = ["--database-url", empty_database_url]
    assert main(["admin", "create-user", *url, "--email", "Boss@Example.com", "--password",
                 "a fine password", "--role", "administrator"]) == 0
    assert "administrator on the whole dealer" in capsys.readouterr().out
    assert main(["admin", "create-user", *url, "--email", "boss@example.com", "--password",
                 "a fine password", "--role", "configurer"]) == 0
    assert "configurer on the whole dealer" in capsys.readouterr().out
    users = _query(empty_database_url, select(User))
    assert [u.email for u in users] == ["boss@example.com"]
    grants = _query(empty_database_url, select(RoleAssignment.role))
    assert sorted(grants) == ["administrator", "configurer"]
    assert main(["admin", "create-token", *url, "--email", "BOSS@example.com"]) == 0
    token = capsys.readouterr().out.strip()
    assert re.fullmatch(r"ewst_[A-Za-z0-9_\-]{43}", token)
    stored = _query(empty_database_url, select(ApiToken.token_hash))
    assert stored == [hash_secret(token)]


@pytest.mark.parametrize(("args", "message"), [
    (["--email", "not-an-email", "--password", "a fine password"], "not an e-mail"),
    (["--email", "a@b.example", "--password", "short"], "at least 8"),
    (["--email", "a@b.example", "--password", "a fine password", "--role", "root"],
     "not one of"),
    (["--email", "a@b.example", "--password", "a fine password", "--scope", "42"],
     "customer 42 does not exist"),
])
def test_create_user_bad_input(empty_database_url: str, capsys: pytest.CaptureFixture[str],
                               args: list[str], message: str) -> None:
    code = main(["admin", "create-user", "--database-url", empty_database_url, *args])
    assert code == 1
    assert message in capsys.readouterr().err
    assert _query(empty_database_url, select(User)) == []


def test_create_token_for_unknown_user(empty_database_url: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "create-token", "--database-url", empty_database_url, "--email",
                 "ghost@example.com"]) == 1
    assert "no user with e-mail" in capsys.readouterr().err


def test_create_relay_prints_credentials_once(empty_database_url: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "create-relay", "--database-url", empty_database_url, "--name", "rt1",
                 "--public-domain", "rt.example.com", "--public-port", "8443",
                 "--tunnel-url", "127.0.0.1:8444"]) == 0
    out = capsys.readouterr().out
    secret = re.search(r'relay-secret = "(ewsr_[^"]+)"', out)
    assert secret and 'relay-id = "' in out
    relay = _query(empty_database_url, select(Relay))[0]
    assert relay.secret_hash == hash_secret(secret.group(1))
    assert (relay.public_port, relay.tunnel_address) == (8443, "127.0.0.1:8444")
    assert main(["admin", "create-relay", "--database-url", empty_database_url, "--name", "rt1",
                 "--public-domain", "rt.example.com"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_bad_database_url_is_a_configuration_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--database-url", "mysql://u@h/db"]) == 2
    assert "not supported" in capsys.readouterr().err


@pytest.mark.integration
def test_portal_process_serves_the_api(empty_database_url: str, tmp_path: Path) -> None:
    """``ewsgate portal`` migrates, listens on a free port, logs in over real HTTP, stops."""
    env = {**os.environ, "EWSGATE_DATABASE_URL": empty_database_url}
    assert main(["admin", "create-user", "--database-url", empty_database_url, "--email",
                 "admin@example.com", "--password", "a fine password", "--role",
                 "administrator"]) == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "ewsgate", "portal", "--listen", "127.0.0.1:0", "--grpc-listen",
         "127.0.0.1:0", "--data-dir", str(tmp_path / "data")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        while time.monotonic() < deadline and url is None:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            match = re.search(r"listening on (http://\S+)", line)
            url = match.group(1) if match else None
        assert url, f"portal did not start: {process.stderr.read() if process.stderr else ''}"
        with httpx.Client(base_url=url, timeout=20) as http:
            login = http.post("/api/v1/auth/login", json={"email": "admin@example.com",
                                                         "password": "a fine password"})
            assert login.status_code == 200, login.text
            csrf = login.json()["csrf_token"]
            created = http.post("/api/v1/customers", json={"name": "Over the wire"},
                                headers={"X-CSRF-Token": csrf})
            assert created.status_code == 201, created.text
            assert http.get("/api/v1/openapi.json").status_code == 200
            bad = http.post("/api/v1/customers", content=b"{", headers={
                "X-CSRF-Token": csrf, "Content-Type": "application/json"})
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "malformed_json"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode in (0, -15)


def test_rotate_kek_reseals_every_snmp_secret_with_a_new_key(
        empty_database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sqlalchemy import text

    from ewsgate.portal.store.keyring import load_or_create_keyring
    from ewsgate.portal.store.models import Customer, Dealer, Device, Installation

    data = tmp_path / "data"
    args = ["--data-dir", str(data), "--database-url", empty_database_url]
    assert main(["db", "upgrade", *args]) == 0
    now = datetime.now(UTC)

    async def seed() -> None:
        database = Database(empty_database_url, pool=False,
                            keyring=load_or_create_keyring(data))
        try:
            async with database.transaction() as s:
                dealer = Dealer(name="D", created_at=now)
                s.add(dealer)
                await s.flush()
                customer = Customer(dealer_id=dealer.id, name="C", created_at=now)
                s.add(customer)
                await s.flush()
                site = Installation(customer_id=customer.id, name="S", created_at=now)
                s.add(site)
                await s.flush()
                s.add(Device(installation_id=site.id, name="P", ip="10.0.0.5", ews_endpoints=[],
                             snmp_version="3", snmp_v3_user="tech", snmp_v3_auth_key="auth-key-1",
                             created_at=now, updated_at=now))
        finally:
            await database.dispose()

    async def raw() -> str:
        database = Database(empty_database_url, pool=False)
        try:
            async with database.engine.connect() as connection:
                return str((await connection.execute(
                    text("SELECT snmp_v3_auth_key FROM devices"))).scalar_one())
        finally:
            await database.dispose()

    asyncio.run(seed())
    assert asyncio.run(raw()).startswith("ewsk1:0001:")
    capsys.readouterr()
    assert main(["admin", "rotate-kek", *args]) == 0
    out = capsys.readouterr().out
    assert "0002 is now current" in out and "re-sealed 1 rows" in out
    assert asyncio.run(raw()).startswith("ewsk1:0002:")
    assert sorted(p.name for p in (data / "keys").iterdir()) == ["kek-0001.key", "kek-0002.key"]
