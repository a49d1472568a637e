"""The web UI through an ASGI client: sign-in, CSRF, what each role sees, errors in pages."""

from __future__ import annotations

import re

import httpx
import pytest

from .ui_world import NOW, PASSWORD, Seeded, csrf_of, sign_in

pytestmark = pytest.mark.db


async def test_pages_need_a_signed_in_user(client: httpx.AsyncClient):
    response = await client.get("/devices?make=hp")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fdevices%3Fmake%3Dhp"


async def test_sign_in_goes_to_next_and_sets_an_httponly_cookie(client, seeded: Seeded):
    form = await client.get("/login?next=/jobs")
    assert 'value="/jobs"' in form.text
    response = await client.post("/login", data={
        "email": seeded.email["admin"], "password": PASSWORD,
        "csrf_token": csrf_of(form.text), "next": "/jobs"})
    assert response.status_code == 303
    assert response.headers["location"] == "/jobs"
    cookie = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookie if c.startswith("ewsgate_session="))
    assert "HttpOnly" in session_cookie and "SameSite=lax" in session_cookie
    page = await client.get("/jobs")
    assert page.status_code == 200
    assert "Alice Admin" in page.text


async def test_sign_in_never_redirects_off_site(client, seeded):
    form = await client.get("/login")
    response = await client.post("/login", data={
        "email": seeded.email["admin"], "password": PASSWORD,
        "csrf_token": csrf_of(form.text), "next": "//evil.example/x"})
    assert response.headers["location"] == "/devices"


async def test_wrong_password_is_a_clear_message(client, seeded):
    response = await sign_in(client, seeded.email["admin"], "not the password")
    assert response.status_code == 401
    assert "Wrong e-mail or password" in response.text
    assert "ewsgate_session=" not in response.headers.get("set-cookie", "")


async def test_repeated_failures_are_rate_limited_with_a_message(client, seeded):
    for _ in range(5):
        response = await sign_in(client, seeded.email["viewer"], "wrong password!")
        assert response.status_code == 401
    response = await sign_in(client, seeded.email["viewer"], PASSWORD)
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.text
    assert int(response.headers["retry-after"]) > 0


async def test_login_form_without_its_token_is_refused(client, seeded):
    await client.get("/login")
    response = await client.post("/login", data={
        "email": seeded.email["admin"], "password": PASSWORD, "csrf_token": "forged"})
    assert response.status_code == 403
    assert "sign in again" in response.text


async def test_cross_site_login_post_is_refused(client, seeded):
    form = await client.get("/login")
    response = await client.post("/login", headers={"Origin": "https://evil.example"}, data={
        "email": seeded.email["admin"], "password": PASSWORD,
        "csrf_token": csrf_of(form.text)})
    assert response.status_code == 403


async def test_form_post_without_csrf_token_is_refused_and_changes_nothing(client, seeded):
    await sign_in(client, seeded.email["configurer"])
    device = seeded.device["reception"]
    response = await client.post(f"/devices/{device}/remote-technician",
                                 data={"enabled": "true"})
    assert response.status_code == 403
    assert "Request refused" in response.text
    page = await client.get(f"/devices/{device}")
    assert 'aria-checked="false"' in page.text


async def test_form_post_with_a_foreign_origin_is_refused(client, seeded):
    await sign_in(client, seeded.email["configurer"])
    device = seeded.device["reception"]
    page = await client.get(f"/devices/{device}")
    response = await client.post(f"/devices/{device}/remote-technician",
                                 headers={"Origin": "https://evil.example"},
                                 data={"enabled": "true", "csrf_token": csrf_of(page.text)})
    assert response.status_code == 403


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


async def test_every_page_has_the_security_headers(client, seeded):
    await sign_in(client, seeded.email["admin"])
    for path in ("/login", "/devices", f"/devices/{seeded.device['reception']}",
                 "/installations", "/customers", "/users", "/jobs", "/account/tokens",
                 "/static/css/portal.css", "/devices/424242"):
        response = await client.get(path)
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, path
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        if not path.startswith("/static"):
            assert response.headers["cache-control"] == "no-store", path


async def test_navigation_shows_users_only_to_administrators(client, seeded):
    await sign_in(client, seeded.email["admin"])
    assert 'href="/users"' in (await client.get("/devices")).text
    await client.post("/logout", data={"csrf_token": csrf_of((await client.get("/jobs")).text)})
    await sign_in(client, seeded.email["viewer"])
    page = await client.get("/devices")
    assert 'href="/users"' not in page.text
    assert (await client.get("/users")).status_code == 403


async def test_sign_out_ends_the_session(client, seeded):
    await sign_in(client, seeded.email["viewer"])
    page = await client.get("/devices")
    cookie = client.cookies.get("ewsgate_session")
    response = await client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    client.cookies.set("ewsgate_session", cookie)  # replaying the old cookie does not work
    assert (await client.get("/devices")).status_code == 303


async def test_admin_creates_a_user_with_a_role(client, seeded):
    await sign_in(client, seeded.email["admin"])
    page = await client.get("/users")
    response = await client.post("/users", data={
        "csrf_token": csrf_of(page.text), "email": "new.tech@example.com", "name": "New Tech",
        "password": "long enough pw", "role": "configurer",
        "customer_id": str(seeded.customer["warehouse"])})
    assert response.status_code == 303
    detail = await client.get(response.headers["location"])
    assert "New Tech" in detail.text
    assert "Remote Technician Configurer" in detail.text
    assert "Acme Logistics \u203a Warehouse" in detail.text


async def test_duplicate_email_is_shown_with_its_field_and_nothing_is_written(client, seeded):
    await sign_in(client, seeded.email["admin"])
    page = await client.get("/users")
    response = await client.post("/users", data={
        "csrf_token": csrf_of(page.text), "email": seeded.email["viewer"], "name": "Dup",
        "password": "long enough pw", "role": "viewer", "customer_id": ""})
    assert response.status_code == 409
    assert 'aria-invalid="true"' in response.text and 'id="email-error"' in response.text
    assert 'value="Dup"' in response.text  # the form keeps what was typed...
    assert "long enough pw" not in response.text  # ...except the password


async def test_refused_role_leaves_no_half_created_user(client, seeded):
    await sign_in(client, seeded.email["admin"])
    page = await client.get("/users")
    response = await client.post("/users", data={
        "csrf_token": csrf_of(page.text), "email": "half@example.com", "name": "Half",
        "password": "long enough pw", "role": "overlord", "customer_id": ""})
    assert response.status_code == 422
    assert "role" in response.text.lower()
    listing = await client.get("/users")
    assert "half@example.com" not in listing.text


async def test_admin_gives_and_removes_a_role(client, seeded):
    await sign_in(client, seeded.email["admin"])
    user = seeded.user["viewer"]
    page = await client.get(f"/users/{user}")
    response = await client.post(f"/users/{user}/roles", data={
        "csrf_token": csrf_of(page.text), "role": "user",
        "customer_id": str(seeded.customer["bluebell"])})
    assert response.status_code == 303
    page = await client.get(f"/users/{user}")
    assert "Remote Technician User" in page.text
    removal = re.findall(rf'action="/users/{user}/roles/(\d+)/delete"', page.text)
    assert len(removal) == 2
    for assignment in removal:
        response = await client.post(f"/users/{user}/roles/{assignment}/delete",
                                     data={"csrf_token": csrf_of(page.text)})
        assert response.status_code == 303
    page = await client.get(f"/users/{user}")
    assert "This user has no role" in page.text


async def test_api_token_is_shown_once_and_can_be_revoked(client, seeded):
    await sign_in(client, seeded.email["tech"])
    page = await client.get("/account/tokens")
    created = await client.post("/account/tokens", data={
        "csrf_token": csrf_of(page.text), "token_name": "inventory script"})
    assert created.status_code == 201
    token = re.search(r'<code id="token-value">([^<]+)</code>', created.text).group(1)
    assert token.startswith("ewst_")
    listing = await client.get("/account/tokens")
    assert "inventory script" in listing.text and token not in listing.text
    token_id = re.search(r'action="/account/tokens/(\d+)/revoke"', listing.text).group(1)
    revoked = await client.post(f"/account/tokens/{token_id}/revoke",
                                data={"csrf_token": csrf_of(listing.text)})
    assert revoked.status_code == 303
    assert "inventory script" not in (await client.get("/account/tokens")).text


async def test_installation_created_with_a_one_time_enrolment_command(client, seeded):
    await sign_in(client, seeded.email["admin"])
    page = await client.get("/installations")
    response = await client.post("/installations", data={
        "csrf_token": csrf_of(page.text), "name": "Branch office",
        "customer_id": str(seeded.customer["bluebell"])})
    assert response.status_code == 201
    assert "ewsgate agent enroll --portal 127.0.0.1:8001 --token ewse_" in response.text
    again = await client.get("/installations")
    assert "Branch office" in again.text and "--token ewse_" not in again.text


async def test_installation_without_customer_names_the_field(client, seeded):
    await sign_in(client, seeded.email["admin"])
    page = await client.get("/installations")
    response = await client.post("/installations", data={
        "csrf_token": csrf_of(page.text), "name": "Nowhere", "customer_id": ""})
    assert response.status_code == 422
    assert 'id="customer_id-error"' in response.text
    assert "Nowhere" not in (await client.get("/installations")).text.split("Add an")[0]


async def test_customers_page_shows_the_tree_and_creates_children(client, seeded):
    await sign_in(client, seeded.email["admin"])
    page = await client.get("/customers")
    assert re.search(r"Acme Logistics.*<ul>.*Warehouse", page.text, re.S)
    response = await client.post("/customers", data={
        "csrf_token": csrf_of(page.text), "name": "Acme Annex",
        "parent_id": str(seeded.customer["acme"])})
    assert response.status_code == 303
    assert "Acme Annex" in (await client.get("/customers")).text


async def test_viewer_sees_no_admin_forms(client, seeded):
    await sign_in(client, seeded.email["viewer"])
    assert "Add an installation" not in (await client.get("/installations")).text
    assert "Add a customer" not in (await client.get("/customers")).text


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


async def test_moving_a_customer_below_its_own_child_is_refused_as_a_cycle(client, seeded):
    await sign_in(client, seeded.email["admin"])
    acme, warehouse = seeded.customer["acme"], seeded.customer["warehouse"]
    page = await client.get(f"/customers/{acme}")
    assert page.status_code == 200
    response = await client.post(f"/customers/{acme}", data={
        "csrf_token": csrf_of(page.text), "name": "Acme Logistics",
        "parent_id": str(warehouse)})
    assert response.status_code == 422
    assert 'id="parent_id-error"' in response.text and "cycle" in response.text
    tree = await client.get("/customers")
    assert re.search(r"Acme Logistics.*<ul>.*Warehouse", tree.text, re.S)


async def test_customer_rename_and_refused_delete_of_a_non_empty_one(client, seeded):
    await sign_in(client, seeded.email["admin"])
    bluebell = seeded.customer["bluebell"]
    page = await client.get(f"/customers/{bluebell}")
    renamed = await client.post(f"/customers/{bluebell}", data={
        "csrf_token": csrf_of(page.text), "name": "Bluebell Dental Group", "parent_id": ""})
    assert renamed.status_code == 303
    assert "Bluebell Dental Group" in (await client.get("/customers")).text
    refused = await client.post(f"/customers/{bluebell}/delete",
                                data={"csrf_token": csrf_of(page.text)})
    assert refused.status_code == 409
    assert "installation" in refused.text


async def test_admin_deactivates_a_user_who_then_cannot_sign_in(client, seeded):
    await sign_in(client, seeded.email["admin"])
    viewer = seeded.user["viewer"]
    page = await client.get(f"/users/{viewer}")
    response = await client.post(f"/users/{viewer}", data={
        "csrf_token": csrf_of(page.text), "name": "Vera Viewer",
        "email": seeded.email["viewer"]})  # "active" unticked
    assert response.status_code == 303
    assert "Inactive" in (await client.get(f"/users/{viewer}")).text
    other = httpx.AsyncClient(transport=client._transport, base_url="http://portal.test")
    async with other:
        assert (await sign_in(other, seeded.email["viewer"])).status_code == 401


async def test_the_last_administrator_cannot_deactivate_themself(client, seeded):
    await sign_in(client, seeded.email["admin"])
    admin = seeded.user["admin"]
    page = await client.get(f"/users/{admin}")
    assert "Delete user" not in page.text  # not offered on one's own account
    response = await client.post(f"/users/{admin}", data={
        "csrf_token": csrf_of(page.text), "name": "Alice Admin",
        "email": seeded.email["admin"]})
    assert response.status_code == 409
    assert "last" in response.text and "administrator" in response.text


async def test_changing_your_own_password_needs_the_current_one(client, seeded):
    await sign_in(client, seeded.email["tech"])
    page = await client.get("/account")
    assert page.status_code == 303
    page = await client.get("/account/tokens")
    wrong = await client.post("/account/profile", data={
        "csrf_token": csrf_of(page.text), "name": "Tom Tech", "current_password": "nope",
        "password": "a brand new password"})
    assert wrong.status_code == 422
    assert 'id="current_password-error"' in wrong.text
    right = await client.post("/account/profile", data={
        "csrf_token": csrf_of(page.text), "name": "Tom T.", "current_password": PASSWORD,
        "password": "a brand new password"})
    assert right.status_code == 303
    other = httpx.AsyncClient(transport=client._transport, base_url="http://portal.test")
    async with other:
        assert (await sign_in(other, seeded.email["tech"], "a brand new password")
                ).status_code == 303
        assert "Tom T." in (await other.get("/devices")).text


async def test_the_portal_application_serves_the_ui_with_its_headers(ui_db, seeded):
    """The composition ``ewsgate portal`` runs (create_app), not just the UI on its own."""
    from ewsgate.portal.app import create_app
    from ewsgate.portal.context import PortalConfig

    app = create_app(PortalConfig(database_url=ui_db.url), database=ui_db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as c:
        assert (await sign_in(c, seeded.email["configurer"])).status_code == 303
        page = await c.get(f"/devices/{seeded.device['reception']}")
        assert page.status_code == 200 and 'role="switch"' in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        css = await c.get("/static/css/portal.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        schema = (await c.get("/api/v1/openapi.json")).json()
        assert not any(path.startswith("/devices") for path in schema["paths"])


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
