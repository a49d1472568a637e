"""The audit trail: every mutating API route leaves an entry (a new route without one fails
here), entries name who, when, from where and what changed, secrets never reach them, a
change and its entry commit together, and the table refuses UPDATE and DELETE."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from portal_world import WORLD_NOW, WORLD_PASSWORD, World
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from ewsgate.portal.app import create_app
from ewsgate.portal.context import PortalConfig
from ewsgate.portal.services import audit, customers, relays, users
from ewsgate.portal.services.access import actor_for
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import AuditEvent, Customer, User

pytestmark = pytest.mark.db
BASE = "http://portal.test"
CLIENT_IP = "192.0.2.7"
AGENT = "audit-walker/1.0 (test)"

#: relay-facing routes (authenticated as a relay, not a user): why the user walk skips them
RELAY_ROUTES = {
    ("POST", "/api/v1/relay/log"):
        "ships the Remote Technician Log; each entry is itself the record (job_log_entries, "
        "deduplicated by seq), so an audit entry per shipped request would only repeat it",
    ("POST", "/api/v1/relay/log-batches"): "the same log shipping, in batches",
    ("POST", "/api/v1/relay/heartbeat"):
        "a liveness beat every few seconds; the relay's row (heartbeat_at, state) is itself "
        "the record, and the sessions a drained or lost relay ends are audited one by one",
    ("POST", "/api/v1/relay/certificate"):
        "audited as relay.certificate with the relay as actor; "
        "tests/sessions/test_audit_relay.py asserts it",
}


class Clock:
    def __init__(self) -> None:
        self.now = WORLD_NOW

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


@pytest.fixture
def app(db: Database, world: World) -> FastAPI:
    return create_app(PortalConfig(database_url=db.url), database=db, clock=Clock())


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(CLIENT_IP, 5000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE,
                                 headers={"User-Agent": AGENT}) as http:
        yield http


async def _bearer(db: Database, world: World, key: str) -> dict[str, str]:
    async with db.transaction() as s:
        user = await s.get(User, world.users[key])
        assert user is not None
        issued = await users.issue_api_token(s, user.id, "walker")
    return {"Authorization": f"Bearer {issued.token}"}


async def _events(db: Database, **where: Any) -> list[AuditEvent]:
    async with db.transaction() as s:
        query = select(AuditEvent).order_by(AuditEvent.id)
        for name, value in where.items():
            query = query.where(getattr(AuditEvent, name) == value)
        return list((await s.scalars(query)).all())


def mutating_api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) under /api/v1 that may change state, from the app's route tree
    (not the OpenAPI document, which leaves out routes hidden from the schema)."""
    found = set()
    for context in iter_route_contexts(app.router.routes):
        methods = set(getattr(context.route, "methods", None) or ())
        path = str(context.path)
        if path.startswith("/api/v1/"):
            for method in methods & {"POST", "PUT", "PATCH", "DELETE"}:
                found.add((method, path))
    return found


@dataclass
class Call:
    method: str
    path: str
    who: str  # a world user key, or "cookie" (the signed-in administrator's web session)
    action: str
    body: Callable[[dict[str, Any]], Any] | None = None
    url: Callable[[dict[str, Any]], str] | None = None
    keep: Callable[[dict[str, Any], httpx.Response], None] | None = None
    ok: tuple[int, ...] = (200, 201, 204)


def _keep(name: str, field: str = "id") -> Callable[[dict[str, Any], httpx.Response], None]:
    def keep(ids: dict[str, Any], response: httpx.Response) -> None:
        ids[name] = response.json()[field]
    return keep


# The walk, in an order that creates what it later changes and deletes.
WALK = [
    Call("POST", "/api/v1/auth/login", "anonymous", "auth.sign_in",
         body=lambda ids: {"email": ids["admin_email"], "password": WORLD_PASSWORD},
         keep=_keep("csrf", "csrf_token")),
    Call("POST", "/api/v1/customers", "cookie", "customer.create",
         body=lambda ids: {"name": "Audited Ltd"}, keep=_keep("customer")),
    Call("PATCH", "/api/v1/customers/{customer_id}", "admin", "customer.update",
         body=lambda ids: {"name": "Audited Limited"},
         url=lambda ids: f"/api/v1/customers/{ids['customer']}"),
    Call("PUT", "/api/v1/customers/{customer_id}/contacts", "admin",
         "customer.contacts_update",
         body=lambda ids: {"emails": ["sec@audited.example"],
                           "webhook_url": "https://hooks.audited.example/rt"},
         url=lambda ids: f"/api/v1/customers/{ids['customer']}/contacts"),
    Call("POST", "/api/v1/notifications/{notification_id}/retry", "admin",
         "notification.retry",
         url=lambda ids: f"/api/v1/notifications/{ids['notification']}/retry"),
    Call("POST", "/api/v1/installations", "admin", "installation.create",
         body=lambda ids: {"customer_id": ids["customer"], "name": "Audited site"},
         keep=_keep("installation")),
    Call("PATCH", "/api/v1/installations/{installation_id}", "admin", "installation.update",
         body=lambda ids: {"enabled": True, "name": "Audited site 2"},
         url=lambda ids: f"/api/v1/installations/{ids['installation']}"),
    Call("POST", "/api/v1/installations/{installation_id}/enrolment-tokens", "admin",
         "enrolment_token.create", body=lambda ids: {},
         url=lambda ids: f"/api/v1/installations/{ids['installation']}/enrolment-tokens"),
    Call("POST", "/api/v1/devices", "admin", "device.create",
         body=lambda ids: {"installation_id": ids["installation"], "name": "Audited MFP",
                           "ip": "192.0.2.50", "mac": "00:1b:a9:00:00:50",
                           "snmp_community": "s3cret-community"},
         keep=_keep("device")),
    Call("PATCH", "/api/v1/devices/{device_id}", "admin", "device.update",
         body=lambda ids: {"name": "Audited MFP 2", "snmp_community": "other-community"},
         url=lambda ids: f"/api/v1/devices/{ids['device']}"),
    Call("PUT", "/api/v1/devices/{device_id}/remote-technician", "configurer@dealer",
         "device.remote_technician", body=lambda ids: {"enabled": True},
         url=lambda ids: f"/api/v1/devices/{ids['device']}/remote-technician"),
    Call("POST", "/api/v1/devices/{device_id}/verify-identity", "admin",
         "device.verify_identity", url=lambda ids: f"/api/v1/devices/{ids['device']}"
         "/verify-identity", ok=(503,)),  # no agent connected: offline, and recorded
    Call("DELETE", "/api/v1/devices/{device_id}/identity-pins", "admin", "device.reset_pins",
         url=lambda ids: f"/api/v1/devices/{ids['device']}/identity-pins"),
    Call("POST", "/api/v1/devices/{device_id}/remote-sessions", "user@dealer",
         "remote_session.start", url=lambda ids: f"/api/v1/devices/{ids['device']}"
         "/remote-sessions", keep=_keep("session", "session_id")),
    Call("DELETE", "/api/v1/remote-sessions/{session_id}", "admin",
         "remote_session.terminate",
         url=lambda ids: f"/api/v1/remote-sessions/{ids['session']}"),
    Call("PUT", "/api/v1/customers/{customer_id}/policy", "admin", "customer.policy",
         body=lambda ids: {"approval": "required", "reason": "required"},
         url=lambda ids: f"/api/v1/customers/{ids['customer']}/policy"),
    Call("POST", "/api/v1/devices/{device_id}/session-requests", "user@dealer",
         "session_request.create", body=lambda ids: {"reason": "toner low", "ticket": "T-1"},
         url=lambda ids: f"/api/v1/devices/{ids['device']}/session-requests",
         keep=lambda ids, r: ids.update(request=r.json()["request"]["id"]), ok=(202,)),
    Call("POST", "/api/v1/session-requests/{request_id}/deny", "admin",
         "session_request.deny", body=lambda ids: {"reason": "not today"},
         url=lambda ids: f"/api/v1/session-requests/{ids['request']}/deny"),
    Call("POST", "/api/v1/devices/{device_id}/session-requests", "user@dealer",
         "session_request.create", body=lambda ids: {"reason": "toner low, again"},
         url=lambda ids: f"/api/v1/devices/{ids['device']}/session-requests",
         keep=lambda ids, r: ids.update(request=r.json()["request"]["id"]), ok=(202,)),
    Call("POST", "/api/v1/session-requests/{request_id}/approve", "admin",
         "session_request.approve", body=lambda ids: {"reason": "go ahead"},
         url=lambda ids: f"/api/v1/session-requests/{ids['request']}/approve"),
    Call("POST", "/api/v1/users", "admin", "user.create",
         body=lambda ids: {"email": "audited@example.com", "password": "a long password 1"},
         keep=_keep("user")),
    Call("PATCH", "/api/v1/users/{user_id}", "admin", "user.update",
         body=lambda ids: {"name": "Audited", "password": "a long password 2"},
         url=lambda ids: f"/api/v1/users/{ids['user']}"),
    Call("POST", "/api/v1/role-assignments", "admin", "role_assignment.create",
         body=lambda ids: {"user_id": ids["user"], "role": "viewer",
                           "customer_id": ids["customer"]}, keep=_keep("assignment")),
    Call("DELETE", "/api/v1/role-assignments/{assignment_id}", "admin",
         "role_assignment.delete",
         url=lambda ids: f"/api/v1/role-assignments/{ids['assignment']}"),
    Call("POST", "/api/v1/api-tokens", "admin", "api_token.create",
         body=lambda ids: {"name": "audited token"}, keep=_keep("token")),
    Call("DELETE", "/api/v1/api-tokens/{token_id}", "admin", "api_token.delete",
         url=lambda ids: f"/api/v1/api-tokens/{ids['token']}"),
    Call("DELETE", "/api/v1/users/{user_id}", "admin", "user.delete",
         url=lambda ids: f"/api/v1/users/{ids['user']}"),
    Call("DELETE", "/api/v1/devices/{device_id}", "admin", "device.delete",
         url=lambda ids: f"/api/v1/devices/{ids['device']}"),
    Call("DELETE", "/api/v1/installations/{installation_id}", "admin", "installation.delete",
         url=lambda ids: f"/api/v1/installations/{ids['installation']}"),
    Call("DELETE", "/api/v1/customers/{customer_id}", "admin", "customer.delete",
         url=lambda ids: f"/api/v1/customers/{ids['customer']}"),
    Call("POST", "/api/v1/auth/logout", "cookie", "auth.sign_out"),
]


async def test_every_mutating_api_route_leaves_an_audit_entry(
        app: FastAPI, client: httpx.AsyncClient, db: Database, world: World) -> None:
    """A route added later without an audit entry (or without a line here) fails the build."""
    routes = mutating_api_routes(app)
    walked = {(c.method, c.path) for c in WALK}
    assert routes - walked - set(RELAY_ROUTES) == set(), "routes the audit walk does not cover"
    assert walked <= routes and set(RELAY_ROUTES) <= routes, "the walk names a route that is gone"

    async with db.transaction() as s:  # Remote Technician needs a relay to pick
        await relays.register_relay(s, name="walk-relay", public_domain="rt.example.net",
                                    tunnel_address="127.0.0.1:9")
    admin_email = world.emails["admin"]
    headers = {key: await _bearer(db, world, key)
               for key in ("admin", "configurer@dealer", "user@dealer")}
    ids: dict[str, Any] = {"admin_email": admin_email}
    async with db.transaction() as s:  # a delivery that gave up, for the retry route
        from ewsgate.portal.store.models import Notification, User

        admin = await s.get(User, world.users["admin"])
        assert admin is not None
        failed = Notification(dealer_id=admin.dealer_id, customer_id=None, kind="test",
                              channel="email", target="sec@audited.example", payload={},
                              status="failed", attempts=8, next_attempt_at=WORLD_NOW,
                              last_error="550 no such user", created_at=WORLD_NOW)
        s.add(failed)
        await s.flush()
        ids["notification"] = failed.id
    for call in WALK:
        before = len(await _events(db, action=call.action))
        if call.who == "cookie":
            auth = {"X-CSRF-Token": ids["csrf"], "Origin": BASE}
        else:
            auth = headers.get(call.who, {})
        url = call.url(ids) if call.url else call.path
        response = await client.request(call.method, url, headers=auth,
                                        json=call.body(ids) if call.body else None)
        assert response.status_code in call.ok, (call.method, call.path, response.text)
        if call.keep:
            call.keep(ids, response)
        entries = await _events(db, action=call.action)
        assert len(entries) == before + 1, f"{call.method} {call.path}: no {call.action} entry"
        entry = entries[-1]
        who = admin_email if call.who in ("cookie", "anonymous") else world.emails[call.who]
        assert (entry.actor_type, entry.actor_label) == ("user", who), call.path
        assert entry.client_ip == CLIENT_IP and entry.user_agent == AGENT, call.path
        assert entry.target_type == audit.ACTIONS[call.action].target_type
        assert entry.at is not None and entry.dealer_id == world.d1, call.path


async def test_entries_show_before_and_after_and_never_secrets(
        client: httpx.AsyncClient, db: Database, world: World) -> None:
    admin = await _bearer(db, world, "admin")
    created = await client.post("/api/v1/api-tokens", json={"name": "ci"}, headers=admin)
    token = created.json()["token"]
    device = world.device["A"]
    patched = await client.patch(f"/api/v1/devices/{device}", headers=admin, json={
        "name": "Renamed", "snmp_community": "t0p-s3cret", "snmp_version": "3",
        "snmp_v3_user": "ops", "snmp_v3_auth_protocol": "SHA", "snmp_v3_auth_key": "authkey-123",
        "snmp_v3_priv_protocol": "AES", "snmp_v3_priv_key": "privkey-456"})
    assert patched.status_code == 200, patched.text
    user = world.users["viewer@dealer"]
    changed = await client.patch(f"/api/v1/users/{user}", headers=admin,
                                 json={"password": "brand new password"})
    assert changed.status_code == 200

    update = (await _events(db, action="device.update"))[-1]
    assert update.before_state is not None and update.after_state is not None
    assert update.before_state["name"] == "Printer A" and update.after_state["name"] == "Renamed"
    assert update.after_state["snmp_community"] == audit.REDACTED  # changed, value hidden
    assert update.after_state["snmp_v3_priv_key"] == audit.REDACTED
    assert update.before_state["snmp_v3_priv_key"] is None  # was unset
    assert "ip" not in update.after_state  # only what changed
    password = (await _events(db, action="user.update"))[-1]
    assert password.after_state == {"password_hash": audit.REDACTED}
    async with db.transaction() as s:
        user_row = await s.get(User, user)
        assert user_row is not None
        stored_hash = user_row.password_hash
    everything = json.dumps([[e.before_state, e.after_state, e.detail]
                             for e in await _events(db)])
    for secret in (token, token[5:], "t0p-s3cret", "authkey-123", "privkey-456",
                   "brand new password", stored_hash, "public"):
        assert secret not in everything


async def test_failed_sign_in_is_recorded_without_the_password(
        client: httpx.AsyncClient, db: Database, world: World) -> None:
    email = world.emails["viewer@dealer"]
    response = await client.post("/api/v1/auth/login",
                                 json={"email": email.upper(), "password": "guess-1234"})
    assert response.status_code == 401
    unknown = await client.post("/api/v1/auth/login",
                                json={"email": "nobody@nowhere.test", "password": "guess-5678"})
    assert unknown.status_code == 401
    known, stranger = await _events(db, action="auth.sign_in_failed")
    assert (known.actor_label, known.actor_id, known.dealer_id) == (
        email, str(world.users["viewer@dealer"]), world.d1)
    assert known.detail == "invalid_credentials" and known.client_ip == CLIENT_IP
    assert (stranger.actor_label, stranger.actor_id, stranger.dealer_id) == (
        "nobody@nowhere.test", None, None)
    assert "guess" not in json.dumps([[e.detail, e.after_state] for e in (known, stranger)])


async def test_a_change_and_its_entry_commit_together(db: Database, world: World) -> None:
    async with db.transaction() as s:
        admin = await s.get(User, world.users["admin"])
        assert admin is not None
        actor = await actor_for(s, admin)
    with pytest.raises(RuntimeError):
        async with db.transaction() as s:
            await customers.create_customer(s, actor, {"name": "Rolled back"})
            raise RuntimeError("the request failed after the change")
    assert await _events(db, action="customer.create") == []
    with pytest.raises(ValueError, match="not in"):
        async with db.transaction() as s:
            customer = Customer(dealer_id=world.d1, name="Half", created_at=WORLD_NOW)
            s.add(customer)
            await s.flush()
            await audit.record(s, "customer.renamed_by_typo", actor=actor, target_id=customer.id)
    async with db.transaction() as s:
        assert await s.scalar(select(func.count()).select_from(Customer).where(
            Customer.name == "Half")) == 0


async def test_the_table_refuses_update_and_delete(db: Database, world: World) -> None:
    """Even a statement through the portal's own connection cannot rewrite the trail."""
    async with db.transaction() as s:
        await audit.record(s, "relay.create", actor=audit.SYSTEM, target_id=1,
                           after={"name": "r"})
    for statement in ("UPDATE audit_events SET action = 'nothing'",
                      "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.transaction() as s:
                await s.execute(text(statement))
    (entry,) = await _events(db)
    assert entry.action == "relay.create"


async def test_client_address_honours_only_the_trusted_proxy(
        db: Database, world: World, app: FastAPI) -> None:
    """X-Forwarded-For counts only from the trusted proxy (127.0.0.1, as ``ewsgate portal``
    runs uvicorn); a client elsewhere cannot choose the address the trail records."""
    fronted = ProxyHeadersMiddleware(app, trusted_hosts="127.0.0.1")
    for peer, expected in (("127.0.0.1", "203.0.113.9"), (CLIENT_IP, CLIENT_IP)):
        transport = httpx.ASGITransport(app=fronted, client=(peer, 4000))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            response = await http.post("/api/v1/auth/login", headers={
                "X-Forwarded-For": "203.0.113.9", "User-Agent": "hostile"},
                json={"email": world.emails["viewer@dealer"], "password": WORLD_PASSWORD})
            assert response.status_code == 200
        entry = (await _events(db, action="auth.sign_in"))[-1]
        assert (entry.client_ip, entry.user_agent) == (expected, "hostile")


# -- reading ------------------------------------------------------------------------------------


async def _seed_events(client: httpx.AsyncClient, db: Database, world: World) -> None:
    admin = await _bearer(db, world, "admin")
    for name in ("=HYPERLINK(\"http://evil.test\")", "Plain", "+cmd"):
        r = await client.post("/api/v1/customers", json={"name": name}, headers=admin)
        assert r.status_code == 201
    scoped = await _bearer(db, world, "administrator@A")
    r = await client.post("/api/v1/customers", headers=scoped,
                          json={"name": "Child of A", "parent_id": world.customer["A"]})
    assert r.status_code == 201


async def test_filters_cursor_and_scope(client: httpx.AsyncClient, db: Database,
                                        world: World) -> None:
    await _seed_events(client, db, world)
    admin = await _bearer(db, world, "admin")
    page = (await client.get("/api/v1/audit-events", headers=admin,
                             params={"action": "customer.create", "limit": 2})).json()
    assert [e["action"] for e in page["events"]] == ["customer.create"] * 2
    assert page["events"][0]["after"]["name"] == "Child of A"  # newest first
    rest = (await client.get("/api/v1/audit-events", headers=admin, params={
        "action": "customer.create", "limit": 2, "cursor": page["next_cursor"]})).json()
    names = [e["after"]["name"] for e in page["events"] + rest["events"]]
    assert names == ["Child of A", "+cmd", "Plain", '=HYPERLINK("http://evil.test")']
    assert rest["next_cursor"] is not None
    last = (await client.get("/api/v1/audit-events", headers=admin, params={
        "action": "customer.create", "limit": 2, "cursor": rest["next_cursor"]})).json()
    assert last == {"events": [], "next_cursor": None}

    by_actor = (await client.get("/api/v1/audit-events", headers=admin,
                                 params={"actor": world.emails["administrator@A"]})).json()
    assert [e["after"]["name"] for e in by_actor["events"]] == ["Child of A"]
    target = page["events"][0]["target_id"]
    by_target = (await client.get("/api/v1/audit-events", headers=admin, params={
        "target_type": "customer", "target_id": target})).json()
    assert [e["target_id"] for e in by_target["events"]] == [target]
    window = (await client.get("/api/v1/audit-events", headers=admin, params={
        "since": "2020-01-01T00:00:00Z", "until": "2020-01-02T00:00:00Z"})).json()
    assert window["events"] == []
    around = (await client.get("/api/v1/audit-events", headers=admin, params={
        "action": "customer.create", "since": "2026-11-28T11:00:00+00:00",
        "until": "2026-11-28T13:00:00Z"})).json()  # the injected clock's WORLD_NOW
    assert len(around["events"]) == 4
    after = (await client.get("/api/v1/audit-events", headers=admin, params={
        "action": "customer.create", "since": "2026-11-28T12:00:00.001Z"})).json()
    assert after["events"] == []

    # a customer-scoped administrator sees its subtree's entries only
    scoped = await _bearer(db, world, "administrator@A")
    mine = (await client.get("/api/v1/audit-events", headers=scoped)).json()["events"]
    assert mine and all(e["customer_id"] in (world.customer["A"], world.customer["A1"])
                        or e["customer_id"] not in world.customer.values() for e in mine)
    assert {e["after"]["name"] for e in mine if e["action"] == "customer.create"} == {
        "Child of A"}
    # other dealers and other roles see nothing of it
    other = (await client.get("/api/v1/audit-events",
                              headers=await _bearer(db, world, "admin2"))).json()
    assert other["events"] == []
    for key in ("configurer@dealer", "user@dealer", "viewer@dealer"):
        denied = await client.get("/api/v1/audit-events", headers=await _bearer(db, world, key))
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    bad = await client.get("/api/v1/audit-events", headers=admin, params={"cursor": "x1"})
    assert bad.status_code == 422
    naive = await client.get("/api/v1/audit-events", headers=admin,
                             params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422 and naive.json()["error"]["field"] == "since"


async def test_csv_export_is_formula_safe_and_jsonl_is_one_object_per_line(
        client: httpx.AsyncClient, db: Database, world: World) -> None:
    await _seed_events(client, db, world)
    admin = await _bearer(db, world, "admin")
    exported = await client.get("/api/v1/audit-events", headers=admin,
                                params={"format": "csv", "action": "customer.create"})
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 4
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@")), value
    assert json.loads(rows[-1]["after"].lstrip("'"))["name"] == '=HYPERLINK("http://evil.test")'
    lines = await client.get("/api/v1/audit-events", headers=admin,
                             params={"format": "jsonl", "action": "customer.create"})
    assert lines.headers["content-type"].startswith("application/x-ndjson")
    objects = [json.loads(line) for line in lines.text.splitlines()]
    assert [o["after"]["name"] for o in objects] == [
        "Child of A", "+cmd", "Plain", '=HYPERLINK("http://evil.test")']
    assert all(o["client_ip"] == CLIENT_IP for o in objects)


async def test_export_streams_past_one_batch(db: Database, world: World) -> None:
    """The streamed export pages through the table in batches without skipping or repeating."""
    async with db.transaction() as s:
        for n in range(1203):
            await audit.record(s, "relay.create", actor=audit.SYSTEM, target_id=n,
                               dealer_id=world.d1)
        admin = await s.get(User, world.users["admin"])
        assert admin is not None
        scope = await audit.audit_scope(s, await actor_for(s, admin))
    seen = [int(e.target_id or 0) async for e in audit.iter_events(
        db, scope, audit.AuditFilter(action="relay.create"), batch=500)]
    assert seen == list(range(1202, -1, -1))




async def test_migrated_audit_table_matches_the_model(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from ewsgate.portal.store.models import Base

    async with db.engine.connect() as connection:
        diffs = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
    assert [d for d in diffs if "audit_events" in repr(d)] == []


def test_signing_key_rotation_and_retirement_are_audited(tmp_path: Any) -> None:
    import asyncio

    from ewsgate.cli import main

    data = str(tmp_path)
    assert main(["admin", "signing-keys", "--data-dir", data, "--rotate"]) == 0
    assert main(["admin", "signing-keys", "--data-dir", data, "--rotate"]) == 0

    async def entries() -> list[AuditEvent]:
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'portal.sqlite3'}", pool=False)
        try:
            return await _events(database)
        finally:
            await database.dispose()

    first, second = asyncio.run(entries())
    assert [first.action, second.action] == ["signing_key.rotate"] * 2
    assert (first.actor_type, first.target_type) == ("system", "signing_key")
    assert main(["admin", "signing-keys", "--data-dir", data,
                 f"--retire={first.target_id}"]) == 0
    retired = asyncio.run(entries())[-1]
    assert (retired.action, retired.target_id) == ("signing_key.retire", first.target_id)


def test_key_encryption_key_rotation_is_audited(tmp_path: Any) -> None:
    import asyncio

    from ewsgate.cli import main

    assert main(["admin", "rotate-kek", "--data-dir", str(tmp_path)]) == 0

    async def entries() -> list[AuditEvent]:
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'portal.sqlite3'}", pool=False)
        try:
            return await _events(database)
        finally:
            await database.dispose()

    (entry,) = asyncio.run(entries())
    assert (entry.action, entry.actor_type) == ("key_encryption_key.rotate", "system")
    assert entry.after_state is not None and entry.after_state["resealed_rows"] == 0
    assert entry.target_id == entry.after_state["kid"]
    key_files = "".join(p.read_text() for p in (tmp_path / "keys").iterdir())
    assert all(line not in repr(entry.after_state) for line in key_files.split() if len(line) > 8)
