"""SNMP secrets at rest: sealed with AES-256-GCM under a key in the data directory, rotatable;
the raw database rows hold only ciphertext."""

from __future__ import annotations

import stat
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from ewsgate.portal.store.db import Database
from ewsgate.portal.store.keyring import (
    PREFIX,
    Keyring,
    KeyringError,
    load_or_create_keyring,
    rotate,
)
from ewsgate.portal.store.models import Customer, Dealer, Device, Installation
from ewsgate.portal.store.sealed import reseal_all

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
KEY = "v3-auth-key-never-in-the-clear"


def test_seal_and_open_round_trip_with_a_fresh_nonce_each_time() -> None:
    keyring = Keyring.ephemeral()
    first = keyring.seal(KEY, context="devices.snmp_v3_auth_key")
    second = keyring.seal(KEY, context="devices.snmp_v3_auth_key")
    assert first.startswith(PREFIX + "0001:") and first != second and KEY not in first
    assert keyring.open(first, context="devices.snmp_v3_auth_key") == KEY


def test_a_value_moved_to_another_column_or_altered_does_not_open() -> None:
    keyring = Keyring.ephemeral()
    sealed = keyring.seal(KEY, context="devices.snmp_v3_auth_key")
    with pytest.raises(KeyringError, match="does not open"):
        keyring.open(sealed, context="devices.snmp_v3_priv_key")
    altered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(KeyringError, match="altered"):
        keyring.open(altered, context="devices.snmp_v3_auth_key")


def test_another_portals_key_is_refused_with_what_to_restore() -> None:
    sealed = Keyring({"0007": b"k" * 32}, "0007").seal(KEY, context="c")
    with pytest.raises(KeyringError, match=r"kek-0007\.key"):
        Keyring.ephemeral().open(sealed, context="c")


def test_plaintext_from_before_sealing_is_read_as_it_is() -> None:
    assert Keyring.ephemeral().open("public", context="devices.snmp_community") == "public"


def test_keys_live_0600_in_a_0700_directory_and_rotation_keeps_old_ones(tmp_path) -> None:
    first = load_or_create_keyring(tmp_path)
    directory = tmp_path / "keys"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "kek-0001.key").stat().st_mode) == 0o600
    assert load_or_create_keyring(tmp_path).keys == first.keys  # loaded, not re-created
    old = first.seal(KEY, context="c")
    rotated = rotate(tmp_path)
    assert rotated.current == "0002" and set(rotated.keys) == {"0001", "0002"}
    assert load_or_create_keyring(tmp_path).current == "0002"
    assert rotated.open(old, context="c") == KEY
    assert rotated.seal(KEY, context="c").startswith(PREFIX + "0002:")


def test_a_damaged_key_file_is_refused(tmp_path) -> None:
    (tmp_path / "keys").mkdir(mode=0o700)
    (tmp_path / "keys" / "kek-0001.key").write_text("c2hvcnQ\n")
    with pytest.raises(KeyringError, match="not 32"):
        load_or_create_keyring(tmp_path)


async def _device(database: Database, **secrets: str | None) -> int:
    async with database.transaction() as session:
        dealer = Dealer(name="D", created_at=NOW)
        session.add(dealer)
        await session.flush()
        customer = Customer(dealer_id=dealer.id, parent_id=None, name="C", created_at=NOW)
        session.add(customer)
        await session.flush()
        site = Installation(customer_id=customer.id, name="S", created_at=NOW)
        session.add(site)
        await session.flush()
        device = Device(installation_id=site.id, name="P", ip="10.0.0.5", ews_endpoints=[],
                        created_at=NOW, updated_at=NOW, **secrets)
        session.add(device)
        await session.flush()
        return device.id


async def _raw(database: Database) -> tuple:
    async with database.engine.connect() as connection:
        return tuple((await connection.execute(text(
            "SELECT snmp_community, snmp_v3_auth_key, snmp_v3_priv_key FROM devices"))).one())


@pytest.mark.db
async def test_device_secrets_are_ciphertext_in_the_row_and_plain_through_the_model(
        tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.sqlite3'}"
    database = Database(url, keyring=load_or_create_keyring(tmp_path))
    await database.upgrade()
    try:
        device_id = await _device(database, snmp_community="c0mmunity",
                                  snmp_v3_auth_key=KEY, snmp_v3_priv_key="priv-key-secret")
        raw = await _raw(database)
        assert all(value.startswith(PREFIX) for value in raw)
        assert not {"c0mmunity", KEY, "priv-key-secret"} & set(repr(raw).split("'"))
        assert KEY not in repr(raw)
        async with database.transaction() as session:
            device = await session.get(Device, device_id)
            assert device is not None
            assert (device.snmp_community, device.snmp_v3_auth_key) == ("c0mmunity", KEY)
    finally:
        await database.dispose()
    # another process with another key cannot read them
    stranger = Database(url)
    try:
        with pytest.raises(KeyringError):
            async with stranger.transaction() as session:
                await session.get(Device, device_id)
    finally:
        await stranger.dispose()


@pytest.mark.db
async def test_rotation_reseals_old_and_plaintext_rows_with_the_new_key(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.sqlite3'}"
    database = Database(url, keyring=load_or_create_keyring(tmp_path))
    await database.upgrade()
    try:
        device_id = await _device(database, snmp_v3_auth_key=KEY)
        async with database.engine.begin() as connection:  # a row from before sealing existed
            await connection.execute(text("UPDATE devices SET snmp_community = 'public'"))
    finally:
        await database.dispose()
    rotated = Database(url, keyring=rotate(tmp_path))
    try:
        assert await reseal_all(rotated.engine) == 1
        community, auth, priv = await _raw(rotated)
        assert community.startswith(PREFIX + "0002:") and auth.startswith(PREFIX + "0002:")
        assert priv is None
        assert await reseal_all(rotated.engine) == 0
        async with rotated.transaction() as session:
            device = await session.get(Device, device_id)
            assert device is not None
            assert (device.snmp_community, device.snmp_v3_auth_key) == ("public", KEY)
    finally:
        await rotated.dispose()


@pytest.mark.db
async def test_upgrading_keeps_plaintext_secrets_and_the_next_start_seals_them(tmp_path) -> None:
    """Nothing is lost across migration 0004: values written before it stay readable and are
    sealed by ``reseal_all`` (what the portal runs at start)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.sqlite3'}"
    old = Database(url, pool=False)
    try:
        await old.upgrade("0002")
        async with old.engine.begin() as connection:
            for sql in ("INSERT INTO dealers (id, name, created_at) VALUES (1, 'D', '2026-01-01')",
                        "INSERT INTO customers (id, dealer_id, name, created_at) "
                        "VALUES (1, 1, 'C', '2026-01-01')",
                        "INSERT INTO installations (id, customer_id, name, enabled, online, "
                        "created_at) VALUES (1, 1, 'S', 1, 0, '2026-01-01')",
                        "INSERT INTO devices (id, installation_id, name, make, model, ip, "
                        "ews_endpoints, identity_method, snmp_version, snmp_port, "
                        "snmp_community, snmp_v3_auth_key, remote_technician_enabled, "
                        "created_at, updated_at) VALUES (1, 1, 'P', 'hp', '', '10.0.0.5', '[]', "
                        "'mac', '3', 161, 'public', 'legacy-auth-key', 0, '2026-01-01', "
                        "'2026-01-01')"):
                await connection.execute(text(sql))
        await old.upgrade()
    finally:
        await old.dispose()
    database = Database(url, keyring=load_or_create_keyring(tmp_path))
    try:
        async with database.transaction() as session:
            device = await session.get(Device, 1)
            assert device is not None
            assert (device.snmp_community, device.snmp_v3_auth_key) == ("public",
                                                                        "legacy-auth-key")
        assert await reseal_all(database.engine) == 1
        community, auth, _ = await _raw(database)
        assert community.startswith(PREFIX) and auth.startswith(PREFIX)
        async with database.transaction() as session:
            device = await session.get(Device, 1)
            assert device is not None and device.snmp_v3_auth_key == "legacy-auth-key"
    finally:
        await database.dispose()


@pytest.mark.db
async def test_a_portal_without_the_key_that_sealed_the_secrets_refuses_to_start(
        tmp_path) -> None:
    """A replica started with its own fresh keys must not run (and later fail per request, or
    seal new values with a key the others lack): it stops at start-up and says what to copy."""
    import asyncio
    import os
    import sys

    portal_dir, other_dir = tmp_path / "portal", tmp_path / "other"
    url = f"sqlite+aiosqlite:///{portal_dir / 'portal.sqlite3'}"
    sealer = Database(url, keyring=load_or_create_keyring(other_dir))
    try:
        await sealer.upgrade()
        await _device(sealer, snmp_community="sealed-elsewhere")
    finally:
        await sealer.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EWSGATE_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ewsgate", "portal", "--data-dir", str(portal_dir),
        "--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0",
        "--enrol-listen", "127.0.0.1:0", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(process.communicate(), 120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 2, err.decode()[-2000:]
    text = err.decode()
    assert "does not open with key 0001" in text and f"{portal_dir}/keys" in text
    assert "listening" not in text
