"""The service layer's behaviour beyond the role matrix: validation, conflicts, cycles,
transactions that leave nothing half-written, enrolment tokens, jobs and their logs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from portal_world import WORLD_NOW, World
from sqlalchemy import func, select

from ewsgate.portal.services import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    NotFound,
    actor_for,
    customers,
    devices,
    installations,
    jobs,
    relays,
    users,
)
from ewsgate.portal.services.access import Actor
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import Customer, Device, Job, RemoteSession, User

pytestmark = pytest.mark.db


async def _actor(db: Database, world: World, key: str) -> Actor:
    async with db.transaction() as s:
        user = await s.get(User, world.users[key])
        assert user is not None
        return await actor_for(s, user)


async def _count(db: Database, model: type) -> int:
    async with db.transaction() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


class Clock:
    def __init__(self) -> None:
        self.now = WORLD_NOW

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


async def test_customer_cannot_move_below_its_own_descendant(db: Database, world: World) -> None:
    admin = await _actor(db, world, "admin")
    with pytest.raises(InvalidInput) as caught:
        async with db.transaction() as s:
            await customers.update_customer(s, admin, world.customer["A"],
                                            {"name": "half", "parent_id": world.customer["A1"]})
    assert caught.value.code == "customer_cycle" and caught.value.field == "parent_id"
    assert "cycle" in caught.value.message
    async with db.transaction() as s:
        a = await s.get(Customer, world.customer["A"])
        assert a is not None and a.parent_id is None and a.name == "Customer A"  # not half-written


async def test_customer_cannot_be_its_own_parent(db: Database, world: World) -> None:
    admin = await _actor(db, world, "admin")
    with pytest.raises(InvalidInput, match="itself"):
        async with db.transaction() as s:
            await customers.update_customer(s, admin, world.customer["B"],
                                            {"parent_id": world.customer["B"]})


async def test_customer_moves_and_nested_scope_follows(db: Database, world: World) -> None:
    admin = await _actor(db, world, "admin")
    async with db.transaction() as s:
        await customers.update_customer(s, admin, world.customer["B"],
                                        {"parent_id": world.customer["A1"]})
    viewer_a = await _actor(db, world, "viewer@A")
    async with db.transaction() as s:
        device = await devices.get_device(s, viewer_a, world.device["B"])  # now under A
        path = await customers.customer_path(s, viewer_a, world.customer["B"])
    assert device.id == world.device["B"]
    assert [c.id for c in path] == [world.customer[k] for k in ("A", "A1", "B")]


async def test_non_empty_customer_is_not_deleted(db: Database, world: World) -> None:
    admin = await _actor(db, world, "admin")
    with pytest.raises(Conflict) as caught:
        async with db.transaction() as s:
            await customers.delete_customer(s, admin, world.customer["A"])
    assert caught.value.code == "customer_not_empty"


async def test_device_ip_that_is_not_an_ip_is_refused_and_nothing_written(
        db: Database, world: World) -> None:
    admin = await _actor(db, world, "admin")
    before = await _count(db, Device)
    with pytest.raises(InvalidInput) as caught:
        async with db.transaction() as s:
            await devices.create_device(s, admin, {"installation_id": world.installation["A"],
                                                   "name": "P", "ip": "printer.local",
                                                   "mac": "00:1b:a9:00:00:02"})
    assert caught.value.field == "ip" and "not an IP address" in caught.value.message
    assert await _count(db, Device) == before


@pytest.mark.parametrize(("field", "value", "code"), [
    ("snmp_port", 70000, "out_of_range"),
    ("snmp_port", 0, "out_of_range"),
    ("ews_endpoints", [{"scheme": "ftp", "port": 21}], "invalid_input"),
    ("ews_endpoints", "https:99999", "out_of_range"),
    ("mac", "00:1b:a9:zz:00:01", "invalid_input"),
    ("make", "acme", "invalid_input"),
    ("snmp_version", "1", "invalid_input"),
    ("colour", "red", "unknown_field"),
    ("remote_technician_enabled", True, "unknown_field"),
])
async def test_device_bad_fields_are_named(db: Database, world: World, field: str,
                                           value: object, code: str) -> None:
    admin = await _actor(db, world, "admin")
    with pytest.raises(InvalidInput) as caught:
        async with db.transaction() as s:
            await devices.update_device(s, admin, world.device["A"], {field: value})
    assert caught.value.code == code
    assert (caught.value.field or "").startswith(field)
    async with db.transaction() as s:
        device = await s.get(Device, world.device["A"])
        assert device is not None and device.snmp_port == 161 and device.make == "hp"


async def test_device_values_are_normalised(db: Database, world: World) -> None:
    admin = await _actor(db, world, "admin")
    async with db.transaction() as s:
        device = await devices.create_device(s, admin, {
            "installation_id": str(world.installation["A"]), "name": " Front desk ",
            "ip": "2001:DB8::0010", "mac": "001B-A912-3456", "make": "Ricoh",
            "ews_endpoints": "https:443, http:80", "snmp_port": "1161",
            "identity_method": "mac"})
    assert (device.name, device.ip, device.mac, device.make) == (
        "Front desk", "2001:db8::10", "00:1b:a9:12:34:56", "ricoh")
    assert device.ews_endpoints == [{"scheme": "https", "port": 443},
                                    {"scheme": "http", "port": 80}]
    assert device.snmp_port == 1161 and device.remote_technician_enabled is False


async def test_identity_method_needs_its_value(db: Database, world: World) -> None:
    admin = await _actor(db, world, "admin")
    with pytest.raises(InvalidInput) as caught:
        async with db.transaction() as s:
            await devices.update_device(s, admin, world.device["A"],
                                        {"identity_method": "serial"})
    assert caught.value.field == "serial"


async def test_device_search_and_filters(db: Database, world: World) -> None:
    viewer = await _actor(db, world, "viewer@dealer")
    async with db.transaction() as s:
        found = await devices.list_devices(s, viewer, devices.DeviceFilter(search="printer a"))
        nested = await devices.list_devices(
            s, viewer, devices.DeviceFilter(customer_id=world.customer["A"]))
        none = await devices.list_devices(s, viewer, devices.DeviceFilter(make="canon"))
    assert {d.id for d in found} == {world.device["A"], world.device["A1"]}
    assert {d.id for d in nested} == {world.device["A"], world.device["A1"]}
    assert none == []


async def test_disabling_remote_technician_ends_live_sessions(db: Database,
                                                              world: World) -> None:
    configurer = await _actor(db, world, "configurer@A")
    async with db.transaction() as s:
        s.add(RemoteSession(id="s" * 22, job_id=world.job["A"], device_id=world.device["A"],
                            user_id=world.users["user@A"], host="h", url="u", redirect_uri="r",
                            status="ready", created_at=WORLD_NOW,
                            expires_at=WORLD_NOW + timedelta(minutes=30)))
    async with db.transaction() as s:
        await devices.set_remote_technician(s, configurer, world.device["A"], False)
    async with db.transaction() as s:
        row = await s.get(RemoteSession, "s" * 22)
        assert row is not None and row.status == "ended" and "disabled" in (row.reason or "")
    user = await _actor(db, world, "user@A")
    with pytest.raises(Conflict) as caught:
        async with db.transaction() as s:
            await devices.authorize_open_session(s, user, world.device["A"])
    assert caught.value.code == "remote_technician_disabled"
    async with db.transaction() as s:
        assert not await devices.can_open_session(s, user, world.device["A"])
        assert await devices.can_open_session(s, user, world.device["A1"])


async def test_disabled_installation_opens_no_session(db: Database, world: World) -> None:
    admin, user = await _actor(db, world, "admin"), await _actor(db, world, "user@A")
    async with db.transaction() as s:
        await installations.update_installation(s, admin, world.installation["A"],
                                                {"enabled": False})
    with pytest.raises(Conflict, match="installation"):
        async with db.transaction() as s:
            await devices.authorize_open_session(s, user, world.device["A"])


async def test_duplicate_email_in_any_case_is_a_conflict(db: Database, world: World) -> None:
    admin = await _actor(db, world, "admin")
    before = await _count(db, User)
    with pytest.raises(Conflict) as caught:
        async with db.transaction() as s:
            await users.create_user(s, admin, {"email": world.emails["viewer@A"].upper(),
                                               "password": "long enough"})
    assert caught.value.code == "email_taken" and caught.value.status == 409
    assert caught.value.field == "email"
    assert await _count(db, User) == before


async def test_weak_password_and_bad_email_are_refused(db: Database, world: World) -> None:
    admin = await _actor(db, world, "admin")
    with pytest.raises(InvalidInput) as weak:
        async with db.transaction() as s:
            await users.create_user(s, admin, {"email": "a@b.example", "password": "short"})
    assert weak.value.field == "password"
    with pytest.raises(InvalidInput) as bad:
        async with db.transaction() as s:
            await users.create_user(s, admin, {"email": "not-an-email", "password": "x" * 12})
    assert bad.value.field == "email"


async def test_last_dealer_administrator_cannot_be_removed(db: Database, world: World) -> None:
    admin = await _actor(db, world, "admin")
    async with db.transaction() as s:
        grants = await users.list_role_assignments(s, admin)
    dealer_admin_grants = [g for g in grants if g.role == "administrator"
                           and g.customer_id is None]
    assert len(dealer_admin_grants) == 2  # "admin" and "administrator@dealer"
    async with db.transaction() as s:
        await users.delete_role_assignment(s, admin, dealer_admin_grants[1].id)
    with pytest.raises(Conflict) as caught:
        async with db.transaction() as s:
            await users.delete_role_assignment(s, admin, dealer_admin_grants[0].id)
    assert caught.value.code == "last_administrator"
    with pytest.raises(Conflict):
        async with db.transaction() as s:
            await users.update_user(s, admin, world.users["admin"], {"active": False})


async def test_user_changes_own_password_only_with_the_current_one(
        db: Database, world: World) -> None:
    viewer = await _actor(db, world, "viewer@A")
    with pytest.raises(InvalidInput) as caught:
        async with db.transaction() as s:
            await users.update_user(s, viewer, viewer.user_id,
                                    {"password": "new password!", "current_password": "wrong"})
    assert caught.value.field == "current_password"
    with pytest.raises(NotFound):
        async with db.transaction() as s:
            await users.get_user(s, viewer, world.users["viewer@dealer"])


async def test_enrolment_token_is_single_use_and_expires(db: Database, world: World) -> None:
    admin = await _actor(db, world, "admin")
    clock = Clock()
    async with db.transaction() as s:
        issued = await installations.create_enrolment_token(
            s, admin, world.installation["A"], lifetime=timedelta(hours=1), clock=clock)
        # another installation's token (one token per installation is valid at a time)
        stale = await installations.create_enrolment_token(
            s, admin, world.installation["A1"], lifetime=timedelta(hours=1), clock=clock)
    assert issued.token.startswith("ewse_") and issued.token not in issued.record.token_hash
    async with db.transaction() as s:
        redeemed = await installations.redeem_enrolment_token(s, issued.token, clock=clock)
    assert redeemed.installation.id == world.installation["A"]
    for token, code in ((issued.token, "enrolment_token_used"),
                        ("ewse_nonsense", "enrolment_token_invalid")):
        with pytest.raises(AuthenticationFailed) as caught:
            async with db.transaction() as s:
                await installations.redeem_enrolment_token(s, token, clock=clock)
        assert caught.value.code == code
    clock.now += timedelta(hours=1, seconds=1)
    with pytest.raises(AuthenticationFailed) as expired:
        async with db.transaction() as s:
            await installations.redeem_enrolment_token(s, stale.token, clock=clock)
    assert expired.value.code == "enrolment_token_expired"


async def test_job_log_appends_deduplicate_by_seq(db: Database, world: World) -> None:
    entries = [{"seq": i, "at": WORLD_NOW, "method": "GET", "url": f"/p{i}", "status": 200,
                "outcome": "ok", "bytes_out": 10} for i in range(1, 4)]
    async with db.transaction() as s:
        assert await jobs.append_job_log(s, world.job["A"], entries) == 3
    async with db.transaction() as s:  # the same batch again, plus one new entry
        more = [*entries, {**entries[0], "seq": 4, "url": "/p4"}]
        assert await jobs.append_job_log(s, world.job["A"], more) == 1
    viewer = await _actor(db, world, "viewer@A")
    async with db.transaction() as s:
        log = await jobs.get_job_log(s, viewer, world.job["A"])
        tail = await jobs.get_job_log(s, viewer, world.job["A"], after_seq=2)
    assert [e.seq for e in log] == [0, 1, 2, 3, 4]
    assert [e.url for e in tail] == ["/p3", "/p4"]


async def test_job_lifecycle_and_filters(db: Database, world: World) -> None:
    user = await _actor(db, world, "user@A")
    clock = Clock()
    async with db.transaction() as s:
        device = await devices.authorize_open_session(s, user, world.device["A1"])
        job = await jobs.create_job(s, type="open_device_web_page", device=device,
                                    user_id=user.user_id, clock=clock)
        await jobs.start_job(s, job, clock=clock)
        await jobs.finish_job(s, job, ok=False, error="identity mismatch", clock=clock)
        with pytest.raises(Conflict):
            await jobs.finish_job(s, job, ok=True, clock=clock)
    async with db.transaction() as s:
        failed = await jobs.list_jobs(s, user, jobs.JobFilter(status="failed"))
        mine = await jobs.list_jobs(s, user, jobs.JobFilter(user_id=user.user_id))
    assert [j.id for j in failed] == [job.id] == [j.id for j in mine]
    assert failed[0].user_email == world.emails["user@A"] and failed[0].error
    with pytest.raises(InvalidInput):
        async with db.transaction() as s:
            await jobs.list_jobs(s, user, jobs.JobFilter(status="exploded"))


async def test_jobs_survive_device_deletion(db: Database, world: World) -> None:
    admin, viewer = await _actor(db, world, "admin"), await _actor(db, world, "viewer@A")
    async with db.transaction() as s:
        await devices.delete_device(s, admin, world.device["A1"])
    async with db.transaction() as s:
        job = await jobs.get_job(s, viewer, world.job["A1"])
    assert job.device_id is None and job.device_name == "Printer A1"
    assert await _count(db, Job) == 4


async def test_provision_user_creates_then_adds_roles(db: Database) -> None:
    async with db.transaction() as s:
        user = await users.provision_user(s, email="First@Example.com", password="long enough",
                                          role="administrator")
        again = await users.provision_user(s, email="first@example.com", password=None,
                                           role="configurer")
        actor = await actor_for(s, again)
    assert user.id == again.id and user.email == "first@example.com"
    assert actor.roles() == {"administrator", "configurer"}


async def test_relay_registration_and_credentials(db: Database) -> None:
    async with db.transaction() as s:
        registered = await relays.register_relay(s, name="rt1", public_domain="rt.example.com",
                                                 public_port=8443, tunnel_address="127.0.0.1:9")
    assert registered.secret.startswith("ewsr_")
    async with db.transaction() as s:
        relay = await relays.authenticate_relay(s, registered.relay.id, registered.secret)
        assert relay.last_seen_at is not None
        with pytest.raises(AuthenticationFailed):
            await relays.authenticate_relay(s, registered.relay.id, "ewsr_wrong")
        with pytest.raises(Conflict):
            await relays.register_relay(s, name="rt1", public_domain="rt.example.com")
