"""Web UI through an ASGI client: sign-in, sessions, CSRF, security headers, your account."""

from __future__ import annotations

import re

import httpx
import pytest

from .ui_world import PASSWORD, Seeded, csrf_of, sign_in

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


def _assert_secured(response: httpx.Response, path: str, *, page: bool = True) -> None:
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, path
    assert response.headers["x-frame-options"] == "DENY", path
    assert response.headers["x-content-type-options"] == "nosniff", path
    if page:
        assert response.headers["cache-control"] == "no-store", path


async def test_every_page_has_the_security_headers(client, seeded):
    _assert_secured(await client.get("/login"), "/login")
    _assert_secured(await client.get("/devices"), "/devices (redirect)", page=False)
    await sign_in(client, seeded.email["admin"])
    for path in ("/devices", f"/devices/{seeded.device['reception']}", "/devices/new",
                 "/installations", "/customers", f"/customers/{seeded.customer['acme']}",
                 "/users", f"/users/{seeded.user['tech']}", "/jobs", "/account/tokens",
                 "/devices/424242"):
        _assert_secured(await client.get(path), path)
    _assert_secured(await client.get("/static/css/portal.css"), "css", page=False)


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


async def test_login_page_sends_someone_already_signed_in_straight_on(client, seeded):
    await sign_in(client, seeded.email["viewer"])
    response = await client.get("/login?next=/jobs")
    assert response.status_code == 303 and response.headers["location"] == "/jobs"
    assert (await client.get("/login?next=//evil.example")).headers["location"] == "/devices"
