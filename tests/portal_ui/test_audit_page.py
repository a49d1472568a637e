"""The Audit page, and the web UI's form posts: every state-changing form leaves an audit
entry (a new form route without one, or without a line here, fails)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import select

from ewsgate.portal.app import create_app
from ewsgate.portal.context import PortalConfig
from ewsgate.portal.services import relays
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import ApiToken, AuditEvent, RemoteSession, RoleAssignment

from .ui_world import NOW, PASSWORD, Seeded, csrf_of, sign_in

pytestmark = pytest.mark.db
BASE = "http://portal.test"
AGENT = "ui-walker/1.0"

#: form routes that are not the portal's own state changes, and why the walk skips them
NOT_WALKED = {
    "/oauth/token": "the relay redeems a one-time code (RFC 6749 token endpoint, relay "
                    "client authentication); the session it belongs to is audited at its start",
}


@pytest.fixture
def portal_app(ui_db: Database, seeded: Seeded, tmp_path: Path) -> FastAPI:
    """The portal as ``ewsgate portal`` composes it (UI, API, Remote Technician)."""
    return create_app(PortalConfig(database_url=ui_db.url, data_dir=tmp_path),
                      database=ui_db, clock=lambda: NOW)


@pytest.fixture
async def browsers(portal_app: FastAPI) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    clients = {}
    for who in ("admin", "configurer", "tech", "viewer"):
        transport = httpx.ASGITransport(app=portal_app, client=("198.51.100.4", 4000))
        clients[who] = httpx.AsyncClient(transport=transport, base_url=BASE,
                                         follow_redirects=False,
                                         headers={"User-Agent": AGENT})
    try:
        yield clients
    finally:
        for client in clients.values():
            await client.aclose()


async def _entries(db: Database, action: str) -> list[AuditEvent]:
    async with db.transaction() as s:
        return list((await s.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                     .order_by(AuditEvent.id))).all())


def form_routes(app: FastAPI) -> set[str]:
    found = set()
    for context in iter_route_contexts(app.router.routes):
        methods = set(getattr(context.route, "methods", None) or ())
        path = str(context.path)
        if not path.startswith("/api/") and methods & {"POST", "PUT", "PATCH", "DELETE"}:
            found.add(re.sub(r":\w+}", "}", path))
    return found


@dataclass
class Form:
    path: str
    who: str
    action: str
    data: dict[str, str]


async def test_every_form_post_leaves_an_audit_entry(
        portal_app: FastAPI, browsers: dict[str, httpx.AsyncClient], ui_db: Database,
        seeded: Seeded) -> None:
    async with ui_db.transaction() as s:
        await relays.register_relay(s, name="ui-relay", public_domain="rt.example.net",
                                    tunnel_address="127.0.0.1:9", clock=lambda: NOW)
    ids: dict[str, Any] = {"acme": seeded.customer["acme"]}
    async with ui_db.transaction() as s:  # a delivery that gave up, for the retry form
        from ewsgate.portal.store.models import Customer, Notification

        acme = await s.get(Customer, seeded.customer["acme"])
        assert acme is not None
        failed = Notification(dealer_id=acme.dealer_id, customer_id=acme.id, kind="test",
                              channel="email", target="sec@acme.example", payload={},
                              status="failed", attempts=8, next_attempt_at=NOW,
                              last_error="550 no such user", created_at=NOW)
        s.add(failed)
        await s.flush()
        ids["notification"] = failed.id
    csrf: dict[str, str] = {}

    async def latest_id(model: Any, **where: Any) -> int:
        async with ui_db.transaction() as s:
            query = select(model.id).order_by(model.id.desc())
            for name, value in where.items():
                query = query.where(getattr(model, name) == value)
            return int(await s.scalar(query.limit(1)) or 0)

    walk: list[Form] = [
        Form("/customers", "admin", "customer.create",
             {"name": "Form Co", "parent_id": "{acme}"}),
        Form("/customers/{customer_id}", "admin", "customer.update",
             {"name": "Form Company", "parent_id": "{acme}"}),
        Form("/customers/{customer_id}/contacts", "admin", "customer.contacts_update",
             {"emails": "sec@form.example", "webhook_url": ""}),
        Form("/notifications/{notification_id}/retry", "admin", "notification.retry", {}),
        Form("/installations", "admin", "installation.create",
             {"name": "Form site", "customer_id": "{customer}"}),
        Form("/installations/{installation_id}/enrolment-token", "admin",
             "enrolment_token.create", {}),
        Form("/installations/{installation_id}/site-subnets", "admin",
             "installation.update", {"site_subnets": "10.20.0.0/24"}),
        Form("/devices", "admin", "device.create",
             {"installation_id": "{installation}", "name": "Form MFP", "ip": "10.20.0.99",
              "mac": "3c:52:82:00:00:99", "ews_endpoints": "https:443",
              "identity_method": "mac", "snmp_version": "2c", "snmp_port": "161",
              "snmp_community": "public", "make": "hp"}),
        Form("/devices/{device_id}/edit", "admin", "device.update",
             {"installation_id": "{installation}", "name": "Form MFP 2", "ip": "10.20.0.98",
              "mac": "3c:52:82:00:00:99", "ews_endpoints": "https:443",
              "identity_method": "mac", "snmp_version": "2c", "snmp_port": "161",
              "snmp_community": "public", "make": "hp"}),
        Form("/devices/{device_id}/remote-technician", "configurer",
             "device.remote_technician", {"enabled": "true"}),
        Form("/devices/{device_id}/verify-identity", "admin", "device.verify_identity", {}),
        Form("/devices/{device_id}/identity-pins/reset", "admin", "device.reset_pins", {}),
        Form("/devices/{device_id}/open", "tech", "remote_session.start", {}),
        Form("/remote-sessions/{session_id}/end", "tech", "remote_session.end",
             {"next": "/devices"}),
        Form("/customers/{customer_id}/policy", "admin", "customer.policy",
             {"approval": "required", "reason": "required", "idle_timeout_minutes": "5"}),
        Form("/devices/{device_id}/open", "tech", "session_request.create",
             {"reason": "toner low", "ticket": "T-9"}),
        Form("/session-requests/{request_id}/deny", "admin", "session_request.deny",
             {"reason": "not today"}),
        Form("/devices/{device_id}/open", "tech", "session_request.create",
             {"reason": "toner low, again"}),
        Form("/session-requests/{request_id}/approve", "admin", "session_request.approve",
             {"reason": "go ahead"}),
        Form("/users", "admin", "user.create",
             {"email": "form.user@example.com", "name": "Form User",
              "password": "a long password 3", "role": "viewer", "customer_id": ""}),
        Form("/users/{user_id}", "admin", "user.update",
             {"name": "Form User 2", "email": "form.user@example.com", "active": "true"}),
        Form("/users/{user_id}/roles", "admin", "role_assignment.create",
             {"role": "user", "customer_id": "{customer}"}),
        Form("/users/{user_id}/roles/{assignment_id}/delete", "admin",
             "role_assignment.delete", {}),
        Form("/users/{user_id}/delete", "admin", "user.delete", {}),
        Form("/account/profile", "viewer", "user.update", {"name": "Vera V."}),
        Form("/account/tokens", "viewer", "api_token.create", {"token_name": "form token"}),
        Form("/account/tokens/{token_id}/revoke", "viewer", "api_token.delete", {}),
        Form("/devices/{device_id}/delete", "admin", "device.delete", {}),
        Form("/customers", "admin", "customer.create", {"name": "Empty Co", "parent_id": ""}),
        Form("/customers/{customer_id}/delete", "admin", "customer.delete", {}),
        Form("/logout", "viewer", "auth.sign_out", {}),
    ]
    routes = form_routes(portal_app)
    walked = {f.path for f in walk} | {"/login"}
    assert routes - walked - set(NOT_WALKED) == set(), "form routes the audit walk misses"
    assert walked <= routes, "the walk names a form route that is gone"

    for who, client in browsers.items():  # /login: the sign-in form
        before = len(await _entries(ui_db, "auth.sign_in"))
        response = await sign_in(client, seeded.email[who])
        assert response.status_code == 303
        assert len(await _entries(ui_db, "auth.sign_in")) == before + 1
        csrf[who] = csrf_of((await client.get("/account/tokens")).text)

    for form in walk:
        url = form.path
        url = url.replace("{customer_id}", str(ids.get("customer", 0)))
        url = url.replace("{installation_id}", str(ids.get("installation", 0)))
        url = url.replace("{device_id}", str(ids.get("device", 0)))
        url = url.replace("{user_id}", str(ids.get("user", 0)))
        url = url.replace("{assignment_id}", str(ids.get("assignment", 0)))
        url = url.replace("{token_id}", str(ids.get("token", 0)))
        url = url.replace("{session_id}", str(ids.get("session", "")))
        url = url.replace("{notification_id}", str(ids.get("notification", 0)))
        url = url.replace("{request_id}", str(ids.get("request", 0)))
        data = {k: v.format(**ids) if v.startswith("{") else v for k, v in form.data.items()}
        before = len(await _entries(ui_db, form.action))
        response = await browsers[form.who].post(url, data={**data,
                                                            "csrf_token": csrf[form.who]})
        assert response.status_code < 500 or form.action == "device.verify_identity", (
            url, response.status_code, response.text[:400])
        entries = await _entries(ui_db, form.action)
        assert len(entries) == before + 1, f"POST {form.path}: no {form.action} entry"
        assert entries[-1].actor_label == seeded.email[form.who]
        assert (entries[-1].client_ip, entries[-1].user_agent) == ("198.51.100.4", AGENT)
        # what later forms act on
        if form.action == "customer.create":
            ids["customer"] = int(entries[-1].target_id or 0)
        elif form.action == "installation.create":
            ids["installation"] = int(entries[-1].target_id or 0)
        elif form.action == "device.create":
            ids["device"] = int(entries[-1].target_id or 0)
        elif form.action == "remote_session.start":
            ids["session"] = entries[-1].target_id
            async with ui_db.transaction() as s:
                assert await s.get(RemoteSession, ids["session"]) is not None
        elif form.action == "session_request.create":
            ids["request"] = int(entries[-1].target_id or 0)
        elif form.action == "user.create":
            ids["user"] = int(entries[-1].target_id or 0)
        elif form.action == "role_assignment.create":
            ids["assignment"] = await latest_id(RoleAssignment, user_id=ids["user"])
        elif form.action == "api_token.create":
            ids["token"] = await latest_id(ApiToken, user_id=seeded.user["viewer"])


async def test_audit_page_lists_filters_and_escapes(
        browsers: dict[str, httpx.AsyncClient], ui_db: Database, seeded: Seeded) -> None:
    admin = browsers["admin"]
    await sign_in(admin, seeded.email["admin"])
    token = csrf_of((await admin.get("/customers")).text)
    created = await admin.post("/customers", data={
        "csrf_token": token, "name": "<script>alert(1)</script>", "parent_id": ""})
    assert created.status_code == 303
    page = await admin.get("/audit")
    assert page.status_code == 200
    assert 'href="/audit"' in page.text and "customer.create" in page.text
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text or (
        "\\u003cscript\\u003e" in page.text)
    assert "script-src" in page.headers["content-security-policy"]
    filtered = await admin.get("/audit", params={"action": "auth.sign_in"})
    assert "customer.create</code>" not in filtered.text and "auth.sign_in</code>" in filtered.text
    bad = await admin.get("/audit", params={"since": "last tuesday"})
    assert bad.status_code == 422 and "Since must be a date" in bad.text
    export = await admin.get("/api/v1/audit-events", params={"format": "csv"})
    assert export.status_code == 200 and "customer.create" in export.text

    viewer = browsers["viewer"]
    await sign_in(viewer, seeded.email["viewer"])
    assert 'href="/audit"' not in (await viewer.get("/devices")).text
    refused = await viewer.get("/audit")
    assert refused.status_code == 403
    assert "customer.create" not in refused.text


async def test_password_never_reaches_the_page(browsers: dict[str, httpx.AsyncClient],
                                               ui_db: Database, seeded: Seeded) -> None:
    admin = browsers["admin"]
    await sign_in(admin, seeded.email["admin"])
    await sign_in(browsers["viewer"], seeded.email["viewer"], password="wrong " + PASSWORD)
    token = csrf_of((await admin.get("/users")).text)
    await admin.post("/users", data={"csrf_token": token, "email": "pw@example.com",
                                     "name": "PW", "password": "hunter2 hunter2",
                                     "role": "viewer", "customer_id": ""})
    page = await admin.get("/audit")
    assert "auth.sign_in_failed" in page.text
    assert "hunter2" not in page.text and "wrong " + PASSWORD not in page.text
    assert "$argon2" not in page.text and "[redacted]" in page.text
