"""The web UI tests' world: what :func:`seed` creates through the service layer, the
application as the portal composes it, and browser-like sign-in helpers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from ewsgate.portal.store.db import Database

PASSWORD = "correct horse battery"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@dataclass
class Seeded:
    """Ids and logins created by :func:`seed`."""

    customer: dict[str, int] = field(default_factory=dict)
    installation: dict[str, int] = field(default_factory=dict)
    device: dict[str, int] = field(default_factory=dict)
    email: dict[str, str] = field(default_factory=dict)
    user: dict[str, int] = field(default_factory=dict)


async def seed(database: Database) -> Seeded:
    """A dealer with customers Acme ⊃ Warehouse and Bluebell, an installation and devices
    each, and one user per role: admin (dealer-wide), configurer and tech (over Acme), viewer
    (dealer-wide), outsider (viewer over Bluebell only). All through the service layer."""
    from ewsgate.portal.services import customers, devices, installations, users
    from ewsgate.portal.services.access import actor_for

    out = Seeded()
    clock = lambda: NOW  # noqa: E731
    async with database.transaction() as s:
        dealer = await users.create_dealer(s, "Northwind Office Systems", clock=clock)
        admin = await users.provision_user(s, email="admin@example.com", password=PASSWORD,
                                           role="administrator", dealer_id=dealer.id,
                                           name="Alice Admin", clock=clock)
        actor = await actor_for(s, admin)
        acme = await customers.create_customer(s, actor, {"name": "Acme Logistics"}, clock=clock)
        warehouse = await customers.create_customer(
            s, actor, {"name": "Warehouse", "parent_id": acme.id}, clock=clock)
        bluebell = await customers.create_customer(s, actor, {"name": "Bluebell Dental"},
                                                   clock=clock)
        out.customer = {"acme": acme.id, "warehouse": warehouse.id, "bluebell": bluebell.id}
        for key, customer_id, name in (("hq", acme.id, "HQ 2nd floor"),
                                       ("wh", warehouse.id, "Warehouse PC"),
                                       ("bb", bluebell.id, "Bluebell front desk")):
            installation = await installations.create_installation(
                s, actor, {"name": name, "customer_id": customer_id}, clock=clock)
            out.installation[key] = installation.id
        for key, inst, name, make, model, ip in (
                ("reception", "hq", "Reception MFP", "hp", "LaserJet M507", "10.20.0.15"),
                ("accounts", "hq", "Accounts printer", "ricoh", "IM C3000", "10.20.0.22"),
                ("label", "wh", "Warehouse label", "kyocera", "ECOSYS P3145dn", "10.30.0.40"),
                ("dental", "bb", "Dental X-ray printer", "brother", "HL-L8360", "10.9.0.5")):
            device = await devices.create_device(s, actor, {
                "installation_id": out.installation[inst], "name": name, "make": make,
                "model": model, "ip": ip, "mac": "3c:52:82:00:00:" + f"{len(out.device):02x}",
                "ews_endpoints": [{"scheme": "https", "port": 443}]}, clock=clock)
            out.device[key] = device.id
        out.email["admin"], out.user["admin"] = admin.email, admin.id
        for key, role, scope, name in (("configurer", "configurer", acme.id, "Carl Configurer"),
                                       ("tech", "user", acme.id, "Tom Tech"),
                                       ("viewer", "viewer", None, "Vera Viewer"),
                                       ("outsider", "viewer", bluebell.id, "Olga Outsider")):
            user = await users.provision_user(
                s, email=f"{key}@example.com", password=PASSWORD, role=role,
                customer_id=scope, dealer_id=dealer.id, name=name, clock=clock)
            out.email[key], out.user[key] = user.email, user.id
    return out


def build_app(database: Database):
    """The portal's HTTP application with the UI mounted, as ``create_app`` composes it."""
    from fastapi import FastAPI

    from ewsgate.portal.auth import AuthSettings, LoginRateLimiter
    from ewsgate.portal.security_headers import SecurityHeadersMiddleware
    from ewsgate.portal.ui import UIConfig, mount_ui

    app = FastAPI()
    settings = AuthSettings()
    mount_ui(app, UIConfig(database=database, auth=settings,
                           limiter=LoginRateLimiter(settings), enrol_address="127.0.0.1:8001"))
    return SecurityHeadersMiddleware(app)


CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD
                  ) -> httpx.Response:
    """Sign in through the login form, as a browser does; returns the POST's response."""
    form = await client.get("/login")
    return await client.post("/login", data={
        "email": email, "password": password, "csrf_token": csrf_of(form.text),
        "next": "/devices"})
