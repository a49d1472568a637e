"""Web UI through an ASGI client: devices (the switch and the buttons per role), jobs."""

from __future__ import annotations

import re

import httpx
import pytest

from .ui_world import NOW, csrf_of, sign_in

pytestmark = pytest.mark.db


async def test_configurer_sees_the_switch_and_flips_it(client, seeded):
    await sign_in(client, seeded.email["configurer"])
    device = seeded.device["reception"]
    page = await client.get(f"/devices/{device}")
    assert 'role="switch"' in page.text and 'aria-checked="false"' in page.text
    assert "Open device web page" not in page.text
    response = await client.post(f"/devices/{device}/remote-technician",
                                 data={"enabled": "true", "csrf_token": csrf_of(page.text)})
    assert response.status_code == 303
    page = await client.get(response.headers["location"])
    assert 'aria-checked="true"' in page.text
    assert "Remote Technician is now enabled" in page.text


@pytest.mark.parametrize("role", ["viewer", "tech", "admin"])
async def test_no_switch_for_people_who_are_not_configurers(client, seeded, role):
    await sign_in(client, seeded.email[role])
    page = await client.get(f"/devices/{seeded.device['reception']}")
    assert page.status_code == 200
    assert 'role="switch"' not in page.text


async def test_open_button_only_for_users_and_only_when_enabled(client, seeded, ui_db):
    from ewsgate.portal.services import devices
    from ewsgate.portal.services.access import actor_for
    from ewsgate.portal.store.models import User

    device = seeded.device["reception"]
    await sign_in(client, seeded.email["tech"])
    page = await client.get(f"/devices/{device}")
    assert 'id="open-device"' not in page.text
    assert "Remote Technician is off for this device" in page.text
    async with ui_db.transaction() as s:
        configurer = await actor_for(s, await s.get(User, seeded.user["configurer"]))
        await devices.set_remote_technician(s, configurer, device, True)
    page = await client.get(f"/devices/{device}")
    assert 'id="open-device"' in page.text
    assert f'action="/devices/{device}/open"' in page.text
    response = await client.post(f"/devices/{device}/open",
                                 data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 501
    assert "Remote sessions are not available yet" in response.text

    viewer = httpx.AsyncClient(transport=client._transport, base_url="http://portal.test")
    async with viewer:
        await sign_in(viewer, seeded.email["viewer"])
        page = await viewer.get(f"/devices/{device}")
        assert 'id="open-device"' not in page.text
        refused = await viewer.post(f"/devices/{device}/open",
                                    data={"csrf_token": csrf_of(page.text)})
        assert refused.status_code == 403
        assert "user role" in refused.text


async def test_device_out_of_scope_is_not_found_like_a_missing_one(client, seeded):
    await sign_in(client, seeded.email["outsider"])
    hidden = await client.get(f"/devices/{seeded.device['reception']}")
    missing = await client.get("/devices/999999")
    assert hidden.status_code == missing.status_code == 404
    listing = await client.get("/devices")
    assert "Dental X-ray printer" in listing.text
    assert "Reception MFP" not in listing.text


async def test_device_list_filters(client, seeded):
    await sign_in(client, seeded.email["admin"])
    page = await client.get("/devices")
    for name in ("Reception MFP", "Accounts printer", "Warehouse label", "Dental X-ray printer"):
        assert name in page.text
    by_customer = await client.get(f"/devices?customer={seeded.customer['acme']}")
    assert "Warehouse label" in by_customer.text  # the customer's subtree
    assert "Dental X-ray printer" not in by_customer.text
    assert "Acme Logistics \u203a Warehouse" in by_customer.text
    by_make = await client.get("/devices?make=ricoh")
    assert "Accounts printer" in by_make.text and "Reception MFP" not in by_make.text
    by_search = await client.get("/devices?q=10.30.0")
    assert "Warehouse label" in by_search.text and "Accounts printer" not in by_search.text
    rt_on = await client.get("/devices?rt=on")
    assert "No device matches these filters" in rt_on.text
    by_installation = await client.get(f"/devices?installation={seeded.installation['bb']}")
    assert "Dental X-ray printer" in by_installation.text
    assert "Reception MFP" not in by_installation.text
    bad = await client.get("/devices?customer=abc")
    assert bad.status_code == 422
    assert "Customer must be a number" in bad.text


async def test_jobs_list_filters_and_detail_with_log(client, seeded, ui_db):
    from ewsgate.portal.services import jobs
    from ewsgate.portal.store.models import Device

    async with ui_db.transaction() as s:
        device = await s.get(Device, seeded.device["reception"])
        job = await jobs.create_job(s, type="open_device_web_page", device=device,
                                    user_id=seeded.user["tech"])
        await jobs.append_job_log(s, job.id, [{
            "seq": 1, "at": NOW, "user_email": "tech@example.com",
            "method": "GET", "url": "/hp/device/DeviceStatus", "status": 200,
            "bytes_in": 400, "bytes_out": 18000, "duration_ms": 80, "outcome": "ok"}])
        job_id = job.id
    await sign_in(client, seeded.email["viewer"])
    listing = await client.get("/jobs?status=queued&type=open_device_web_page")
    assert f'href="/jobs/{job_id}"' in listing.text
    assert f'href="/jobs/{job_id}"' not in (await client.get("/jobs?status=failed")).text
    other = seeded.device["dental"]
    assert f'href="/jobs/{job_id}"' not in (await client.get(f"/jobs?device={other}")).text
    bad = await client.get("/jobs?status=exploded")
    assert bad.status_code == 422 and "status" in bad.text
    detail = await client.get(f"/jobs/{job_id}")
    assert "Remote Technician Log" in detail.text
    assert "/hp/device/DeviceStatus" in detail.text and "17.6 KiB" in detail.text
    assert f'href="/api/v1/jobs/{job_id}/log?format=csv"' in detail.text
    outsider = httpx.AsyncClient(transport=client._transport, base_url="http://portal.test")
    async with outsider:
        await sign_in(outsider, seeded.email["outsider"])
        assert (await outsider.get(f"/jobs/{job_id}")).status_code == 404


async def test_admin_adds_a_device(client, seeded):
    await sign_in(client, seeded.email["admin"])
    listing = await client.get("/devices")
    assert 'href="/devices/new"' in listing.text
    form = await client.get("/devices/new")
    assert form.status_code == 200
    response = await client.post("/devices", data={
        "csrf_token": csrf_of(form.text), "installation_id": str(seeded.installation["hq"]),
        "name": "Lobby printer", "make": "canon", "model": "imageRUNNER C3226",
        "ip": "10.20.0.99", "ews_endpoints": "https:443, http:80", "identity_method": "mac",
        "mac": "00-1E-8F-AA-BB-CC", "snmp_version": "2c", "snmp_port": "161",
        "snmp_community": "public"})
    assert response.status_code == 303
    page = await client.get(response.headers["location"])
    assert "Lobby printer" in page.text and "00:1e:8f:aa:bb:cc" in page.text
    assert "https:443" in page.text and "The device was added" in page.text


@pytest.mark.parametrize(("field", "value", "text"), [
    ("ip", "10.20.0.300", "ip"),
    ("ews_endpoints", "https:99999", "ews_endpoints"),
    ("mac", "not-a-mac", "mac"),
])
async def test_bad_device_field_is_named_and_nothing_is_written(client, seeded, field, value,
                                                                 text):
    await sign_in(client, seeded.email["admin"])
    form = await client.get("/devices/new")
    data = {"csrf_token": csrf_of(form.text), "installation_id": str(seeded.installation["hq"]),
            "name": "Broken printer", "make": "hp", "ip": "10.20.0.98",
            "ews_endpoints": "http:80", "identity_method": "mac", "mac": "00:1e:8f:00:00:01",
            "snmp_version": "2c", "snmp_port": "161", field: value}
    response = await client.post("/devices", data=data)
    assert response.status_code == 422
    assert f'id="{text}-error"' in response.text
    assert 'value="Broken printer"' in response.text
    assert "Broken printer" not in (await client.get("/devices")).text


async def test_only_administrators_add_devices(client, seeded):
    await sign_in(client, seeded.email["configurer"])
    assert 'href="/devices/new"' not in (await client.get("/devices")).text
    assert (await client.get("/devices/new")).status_code == 403
    page = await client.get("/devices")
    response = await client.post("/devices", data={
        "csrf_token": csrf_of(page.text), "installation_id": str(seeded.installation["hq"]),
        "name": "Sneaky", "ip": "10.20.0.97"})
    assert response.status_code == 403


class _Agent:
    """Stands in for an installation's control stream (the control channel is not under test
    here): answers VerifyDevice with a fixed result, as an agent would."""

    def __init__(self, result: dict) -> None:
        self.result = result
        self.commands: list[tuple[int, str, dict]] = []

    async def send_command(self, installation_id, kind, payload=None, *, timeout=30.0,
                           on_progress=None):
        self.commands.append((installation_id, kind, payload))
        return self.result


def _portal_app(ui_db, background=()):
    from ewsgate.portal.app import create_app
    from ewsgate.portal.context import PortalConfig

    return create_app(PortalConfig(database_url=ui_db.url), database=ui_db,
                      background=list(background))


async def test_verify_identity_shows_the_result_on_the_device(ui_db, seeded):
    from types import SimpleNamespace

    agent = _Agent({"result": "mismatch", "code": "mac_mismatch",
                    "detail": "expected 3c:52:82:00:00:00, found 00:11:22:33:44:55",
                    "seen_mac": "00:11:22:33:44:55"})
    control = SimpleNamespace(name="control", hub=agent)
    app = _portal_app(ui_db)
    app.state.portal.background.append(control)
    device = seeded.device["reception"]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as c:
        await sign_in(c, seeded.email["tech"])
        page = await c.get(f"/devices/{device}")
        assert 'id="verify-identity"' in page.text
        response = await c.post(f"/devices/{device}/verify-identity",
                                data={"csrf_token": csrf_of(page.text)})
        assert response.status_code == 303
        page = await c.get(response.headers["location"])
        assert "Identity mismatch" in page.text
        assert "found 00:11:22:33:44:55" in page.text
        assert agent.commands[0][:2] == (seeded.installation["hq"], "VerifyDevice")
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as c:
        await sign_in(c, seeded.email["viewer"])
        page = await c.get(f"/devices/{device}")
        assert 'id="verify-identity"' not in page.text
        refused = await c.post(f"/devices/{device}/verify-identity",
                               data={"csrf_token": csrf_of(page.text)})
        assert refused.status_code == 403
    assert len(agent.commands) == 1


async def test_verify_identity_without_a_control_server_says_why(ui_db, seeded):
    transport = httpx.ASGITransport(app=_portal_app(ui_db))
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as c:
        await sign_in(c, seeded.email["configurer"])
        device = seeded.device["reception"]
        page = await c.get(f"/devices/{device}")
        response = await c.post(f"/devices/{device}/verify-identity",
                                data={"csrf_token": csrf_of(page.text)})
        assert response.status_code == 503
        assert "control server" in response.text


async def test_admin_edits_a_device_and_refused_values_keep_the_record(client, seeded):
    await sign_in(client, seeded.email["admin"])
    device = seeded.device["accounts"]
    page = await client.get(f"/devices/{device}")
    assert f'href="/devices/{device}/edit"' in page.text
    form = await client.get(f"/devices/{device}/edit")
    assert 'value="10.20.0.22"' in form.text and 'value="https:443"' in form.text
    data = {"csrf_token": csrf_of(form.text), "installation_id": str(seeded.installation["hq"]),
            "name": "Accounts printer", "make": "ricoh", "model": "IM C3000",
            "ip": "10.20.0.23", "hostname": "accounts-mfp.acme.example",
            "ews_endpoints": "https:443", "identity_method": "mac",
            "mac": "3c:52:82:00:00:01", "serial": "", "snmp_version": "2c",
            "snmp_port": "161", "snmp_community": "public"}
    saved = await client.post(f"/devices/{device}/edit", data=data)
    assert saved.status_code == 303
    page = await client.get(saved.headers["location"])
    assert "10.20.0.23" in page.text and "accounts-mfp.acme.example" in page.text
    assert "The device was saved." in page.text
    refused = await client.post(f"/devices/{device}/edit", data={**data, "ip": "nope"})
    assert refused.status_code == 422 and 'id="ip-error"' in refused.text
    assert "10.20.0.23" in (await client.get(f"/devices/{device}")).text


async def test_admin_deletes_a_device_and_configurers_cannot(client, seeded):
    device = seeded.device["label"]
    await sign_in(client, seeded.email["configurer"])
    page = await client.get(f"/devices/{device}")
    assert f'href="/devices/{device}/edit"' not in page.text
    assert (await client.get(f"/devices/{device}/edit")).status_code == 403
    refused = await client.post(f"/devices/{device}/delete",
                                data={"csrf_token": csrf_of(page.text)})
    assert refused.status_code == 403
    await client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    await sign_in(client, seeded.email["admin"])
    page = await client.get(f"/devices/{device}/edit")
    deleted = await client.post(f"/devices/{device}/delete",
                                data={"csrf_token": csrf_of(page.text)})
    assert deleted.status_code == 303
    listing = await client.get(deleted.headers["location"])
    assert "The device was deleted" in listing.text and "Warehouse label" not in listing.text


async def test_job_page_log_downloads_work_with_the_session_cookie(ui_db, seeded):
    from ewsgate.portal.services import jobs
    from ewsgate.portal.store.models import Device

    async with ui_db.transaction() as s:
        device = await s.get(Device, seeded.device["reception"])
        job = await jobs.create_job(s, type="open_device_web_page", device=device,
                                    user_id=seeded.user["tech"])
        await jobs.append_job_log(s, job.id, [{
            "seq": 1, "at": NOW, "method": "GET", "url": "/info_configuration.html",
            "status": 200, "outcome": "ok"}])
        job_id = job.id
    transport = httpx.ASGITransport(app=_portal_app(ui_db))
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as c:
        await sign_in(c, seeded.email["viewer"])
        page = await c.get(f"/jobs/{job_id}")
        link = re.search(r'href="(/api/v1/jobs/\d+/log\?format=csv)"', page.text).group(1)
        download = await c.get(link)
        assert download.status_code == 200
        assert download.headers["content-type"].startswith("text/csv")
        assert "/info_configuration.html" in download.text


async def test_a_jobs_page_shows_what_the_agent_reported_about_the_relay(client, seeded, ui_db):
    from ewsgate.portal.services import jobs
    from ewsgate.portal.store.models import Device, TunnelReport

    async with ui_db.transaction() as s:
        device = await s.get(Device, seeded.device["reception"])
        job = await jobs.create_job(s, type="open_device_web_page", device=device,
                                    user_id=seeded.user["tech"])
        s.add(TunnelReport(job_id=job.id, session_id="sess", installation_id=None, at=NOW,
                           kind="protocol_violation", code="ENHANCE_YOUR_CALM",
                           budget="early_resets", count=4,
                           detail="<script>alert(1)</script> the relay flooded"))
        job_id = job.id
    await sign_in(client, seeded.email["viewer"])
    detail = await client.get(f"/jobs/{job_id}")
    assert "Relay reports from the agent" in detail.text
    assert "protocol violation" in detail.text and "budget early_resets" in detail.text
    assert "<script>alert(1)</script>" not in detail.text  # a peer's text, escaped
    assert "&lt;script&gt;" in detail.text
