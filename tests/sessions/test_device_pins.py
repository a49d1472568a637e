"""Device pins in the portal: sent with the check, learned at the first verified session
(trust on first use), reset by an Administrator (recorded), agents' SessionFailed reports."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from ewsgate.portal.control.session_reports import SessionReports
from ewsgate.portal.services import device_pins
from ewsgate.portal.services.errors import NotFound, PermissionDenied
from ewsgate.portal.store.models import Device, DevicePinEvent, Installation, Job, RemoteSession
from sessions.rt_world import RtWorld, settle

pytestmark = pytest.mark.db
FP = "ab" * 32
MAC = "00:1b:a9:00:00:01"


def _ok(learned: dict[str, str | None]) -> dict[str, object]:
    return {"status": "ready", "identity": {
        "result": "verified", "code": "verified", "detail": "verified",
        "pins": {"result": "verified", "code": "pins_verified", "detail": "first time",
                 "learned": learned}}}


async def _device(rt: RtWorld, key: str = "on") -> Device:
    async with rt.db.transaction() as s:
        device = await s.get(Device, rt.device[key])
        assert device is not None
        return device


async def _events(rt: RtWorld) -> list[DevicePinEvent]:
    async with rt.db.transaction() as s:
        return list((await s.scalars(select(DevicePinEvent).order_by(DevicePinEvent.id))).all())


async def test_first_verified_session_pins_what_the_agent_saw_and_later_ones_send_it(
        rt: RtWorld) -> None:
    rt.hub.script = [("ok", _ok({"ews_cert_sha256": FP, "mac": MAC}))]
    await rt.set_policy(max_sessions_per_user_per_device=2)  # two live sessions in a row
    await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await settle(rt)
    first = next(c for c in rt.hub.sent if c.kind == "OpenSession").payload["identity"]
    assert first["pins"] == {"ews_cert_sha256": None, "mac": None}
    assert first["tls_port"] == 443
    device = await _device(rt)
    assert (device.pin_ews_cert_sha256, device.pin_mac) == (FP, MAC)
    assert device.pins_learned_at == rt.clock.now
    [learned] = await _events(rt)
    assert learned.action == "learned" and learned.new_ews_cert_sha256 == FP

    # a later session: the pins go to the agent; another value seen does not overwrite them
    rt.hub.script = [("ok", _ok({"ews_cert_sha256": "cd" * 32, "mac": MAC}))]
    await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await settle(rt)
    second = [c for c in rt.hub.sent if c.kind == "OpenSession"][1].payload["identity"]
    assert second["pins"] == {"ews_cert_sha256": FP, "mac": MAC}
    assert (await _device(rt)).pin_ews_cert_sha256 == FP
    assert len(await _events(rt)) == 1


async def test_garbage_from_an_agent_is_not_pinned(rt: RtWorld) -> None:
    rt.hub.script = [("ok", _ok({"ews_cert_sha256": "<script>", "mac": "00:00:00:00:00:00"}))]
    await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await settle(rt)
    device = await _device(rt)
    assert device.pin_ews_cert_sha256 is None and device.pin_mac is None
    assert await _events(rt) == []


async def test_only_an_administrator_resets_the_pins_and_it_is_recorded(rt: RtWorld) -> None:
    async with rt.db.transaction() as s:
        device = await s.get(Device, rt.device["on"])
        assert device is not None
        device.pin_ews_cert_sha256, device.pin_mac = FP, MAC
    for who in ("tech", "configurer", "viewer", "adminB"):
        with pytest.raises((PermissionDenied, NotFound)):
            async with rt.db.transaction() as s:
                await device_pins.reset_pins(s, await rt.actor(who), rt.device["on"],
                                             clock=rt.clock)
    assert (await _device(rt)).pin_mac == MAC
    async with rt.db.transaction() as s:
        await device_pins.reset_pins(s, await rt.actor("admin"), rt.device["on"],
                                     clock=rt.clock)
    device = await _device(rt)
    assert device.pin_ews_cert_sha256 is None and device.pin_mac is None
    [reset] = await _events(rt)
    assert reset.action == "reset" and reset.user_email == "admin@example.com"
    assert (reset.old_ews_cert_sha256, reset.old_mac) == (FP, MAC)
    async with rt.db.transaction() as s:
        history = await device_pins.pin_events(s, await rt.actor("viewer"), rt.device["on"])
    assert [e.action for e in history] == ["reset"]


async def test_an_agent_report_fails_its_own_session_with_the_reason_on_the_job(
        rt: RtWorld) -> None:
    view = await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await settle(rt)
    reports = SessionReports(rt.db, rt.clock)
    async with rt.db.transaction() as s:
        other = Installation(customer_id=rt.customer["B"], name="Site B", enabled=True,
                             online=True, created_at=rt.clock.now)
        s.add(other)
        await s.flush()
        other_id = other.id
    # another installation cannot end it
    assert not await reports.session_failed(other_id, view.session_id, "serial_mismatch", "x")
    detail = ("the device was re-verified (tunnel reconnect) and the check failed: device "
              "identity mismatch at 192.0.2.10: expected web server certificate SHA-256 …")
    assert await reports.session_failed(rt.installation, view.session_id, "cert_pin_mismatch",
                                        detail)
    assert not await reports.session_failed(rt.installation, view.session_id,
                                            "cert_pin_mismatch", detail)  # once
    await rt.sessions.sweep()
    await settle(rt)
    async with rt.db.transaction() as s:
        row = await s.get(RemoteSession, view.session_id)
        job = await s.get(Job, view.job_id)
    assert row is not None and row.status == "failed"
    assert row.reason == f"cert_pin_mismatch: {detail}"
    assert job is not None and job.status == "failed" and job.error == row.reason
    assert "CloseSession" in rt.hub.kinds()
    assert [e.action for e in await _events(rt)] == ["mismatch"]


async def test_identity_strength_names_the_weak_case(rt: RtWorld) -> None:
    device = await _device(rt)
    assert device_pins.identity_strength(device)["level"] == "pending"  # has https, no pin
    device.ews_endpoints = [{"scheme": "http", "port": 80}]
    weak = device_pins.identity_strength(device)
    assert weak["level"] == "weak" and weak["weak"] is True
    assert "Weak identity" in weak["message"] and "SNMPv3 authPriv" in weak["message"]
    device.pin_mac = MAC
    assert device_pins.identity_strength(device)["level"] == "pinned"
    device.snmp_version, device.snmp_v3_auth_key, device.snmp_v3_priv_key = "3", "a" * 8, "p" * 8
    assert device_pins.identity_strength(device)["level"] == "strong"
