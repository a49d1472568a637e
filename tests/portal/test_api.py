"""The REST API over HTTP (in-process ASGI): authentication, CRUD, the Remote Technician
switch, jobs and their log, and every kind of bad input answered with a JSON error."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from portal_world import WORLD_NOW, WORLD_PASSWORD, World
from sqlalchemy import func, select

from ewsgate.portal.app import create_app
from ewsgate.portal.context import PortalConfig
from ewsgate.portal.services import users
from ewsgate.portal.services.access import actor_for
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import Customer, Device, User

pytestmark = pytest.mark.db
BASE = "http://portal.test"


class Clock:
    def __init__(self) -> None:
        self.now = WORLD_NOW

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(db: Database, world: World, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(PortalConfig(database_url=db.url), database=db, clock=clock)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 5000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        yield http


async def _token(db: Database, world: World, key: str) -> dict[str, str]:
    async with db.transaction() as s:
        user = await s.get(User, world.users[key])
        assert user is not None
        issued = await users.create_api_token(s, await actor_for(s, user), "test")
    return {"Authorization": f"Bearer {issued.token}"}


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return error


async def test_openapi_document_lists_the_api(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/api/v1/devices/{device_id}/remote-technician", "/api/v1/jobs/{job_id}/log",
                 "/api/v1/role-assignments", "/api/v1/auth/login"):
        assert path in paths
    assert "put" in paths["/api/v1/devices/{device_id}/remote-technician"]


async def test_cookie_login_needs_csrf_for_changes(client: httpx.AsyncClient,
                                                  world: World) -> None:
    response = await client.post("/api/v1/auth/login", json={
        "email": world.emails["configurer@A"], "password": WORLD_PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["email"] == world.emails["configurer@A"]
    assert [r["role"] for r in body["roles"]] == ["configurer"]
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    url = f"/api/v1/devices/{world.device['A']}/remote-technician"
    _error(await client.put(url, json={"enabled": False}), 403, "csrf_failed")
    _error(await client.put(url, json={"enabled": False},
                            headers={"X-CSRF-Token": body["csrf_token"],
                                     "Origin": "https://evil.example"}), 403, "csrf_failed")
    ok = await client.put(url, json={"enabled": False},
                          headers={"X-CSRF-Token": body["csrf_token"]})
    assert ok.status_code == 200 and ok.json()["remote_technician_enabled"] is False
    me = await client.get("/api/v1/auth/me")
    assert me.json()["csrf_token"] == body["csrf_token"]
    out = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": body["csrf_token"]})
    assert out.status_code == 204
    _error(await client.get("/api/v1/auth/me"), 401, "not_authenticated")


async def test_wrong_password_and_rate_limit(client: httpx.AsyncClient, world: World) -> None:
    for _ in range(5):
        _error(await client.post("/api/v1/auth/login", json={
            "email": world.emails["viewer@A"], "password": "nope nope"}), 401,
            "invalid_credentials")
    locked = await client.post("/api/v1/auth/login", json={
        "email": world.emails["viewer@A"], "password": WORLD_PASSWORD})
    _error(locked, 429, "too_many_attempts")
    assert int(locked.headers["retry-after"]) > 0


async def test_expired_session_is_refused(client: httpx.AsyncClient, world: World,
                                          clock: Clock) -> None:
    login = await client.post("/api/v1/auth/login", json={
        "email": world.emails["viewer@A"], "password": WORLD_PASSWORD})
    assert login.status_code == 200
    assert (await client.get("/api/v1/devices")).status_code == 200
    clock.now += timedelta(hours=13)
    _error(await client.get("/api/v1/devices"), 401, "session_expired")


async def test_bearer_tokens(client: httpx.AsyncClient, db: Database, world: World) -> None:
    headers = await _token(db, world, "viewer@A")
    devices = await client.get("/api/v1/devices", headers=headers)
    assert devices.status_code == 200
    assert {d["id"] for d in devices.json()} == {world.device["A"], world.device["A1"]}
    assert all("snmp_community" not in d for d in devices.json())
    bad = await client.get("/api/v1/devices", headers={"Authorization": "Bearer ewst_nope"})
    _error(bad, 401, "invalid_token")
    assert "Bearer" in bad.headers["www-authenticate"]
    _error(await client.get("/api/v1/devices", headers={"Authorization": "Basic eDp5"}), 401,
           "invalid_token")
    _error(await client.get("/api/v1/devices"), 401, "not_authenticated")


async def test_remote_technician_switch_by_role(client: httpx.AsyncClient, db: Database,
                                                world: World) -> None:
    url = f"/api/v1/devices/{world.device['A1']}/remote-technician"
    configurer = await _token(db, world, "configurer@A")
    response = await client.put(url, json={"enabled": False}, headers=configurer)
    assert response.status_code == 200 and response.json()["remote_technician_enabled"] is False
    for key in ("admin", "viewer@A", "user@A"):
        _error(await client.put(url, json={"enabled": True},
                                headers=await _token(db, world, key)), 403, "forbidden")
    out_of_scope = f"/api/v1/devices/{world.device['B']}/remote-technician"
    missing = "/api/v1/devices/999999/remote-technician"
    hidden = _error(await client.put(out_of_scope, json={"enabled": True},
                                     headers=configurer), 404, "not_found")
    absent = _error(await client.put(missing, json={"enabled": True}, headers=configurer),
                    404, "not_found")
    assert hidden["message"].replace(str(world.device["B"]), "N") == absent["message"].replace(
        "999999", "N")


async def test_inventory_crud(client: httpx.AsyncClient, db: Database, world: World) -> None:
    admin = await _token(db, world, "admin")
    customer = await client.post("/api/v1/customers", headers=admin,
                                 json={"name": "Acme", "parent_id": world.customer["B"]})
    assert customer.status_code == 201, customer.text
    cid = customer.json()["id"]
    site = await client.post("/api/v1/installations", headers=admin,
                             json={"customer_id": cid, "name": "Acme HQ"})
    assert site.status_code == 201
    sid = site.json()["id"]
    token = await client.post(f"/api/v1/installations/{sid}/enrolment-tokens", headers=admin)
    assert token.status_code == 201 and token.json()["token"].startswith("ewse_")
    device = await client.post("/api/v1/devices", headers=admin, json={
        "installation_id": sid, "name": "MFP 2nd floor", "make": "kyocera", "ip": "10.0.0.5",
        "mac": "00-17-C8-AA-BB-CC", "ews_endpoints": [{"scheme": "https", "port": 443}]})
    assert device.status_code == 201, device.text
    did = device.json()["id"]
    assert device.json()["mac"] == "00:17:c8:aa:bb:cc"
    assert device.json()["remote_technician_enabled"] is False
    patched = await client.patch(f"/api/v1/devices/{did}", headers=admin,
                                 json={"model": "TASKalfa 3554ci", "snmp_version": "off"})
    assert patched.status_code == 200 and patched.json()["snmp_version"] == "off"
    found = await client.get("/api/v1/devices", headers=admin,
                             params={"search": "taskalfa", "customer_id": world.customer["B"]})
    assert [d["id"] for d in found.json()] == [did]
    _error(await client.delete(f"/api/v1/customers/{cid}", headers=admin), 409,
           "customer_not_empty")
    assert (await client.delete(f"/api/v1/devices/{did}", headers=admin)).status_code == 204
    assert (await client.delete(f"/api/v1/installations/{sid}",
                                headers=admin)).status_code == 204
    assert (await client.delete(f"/api/v1/customers/{cid}", headers=admin)).status_code == 204
    _error(await client.get(f"/api/v1/customers/{cid}", headers=admin), 404, "not_found")


async def test_users_and_roles(client: httpx.AsyncClient, db: Database, world: World) -> None:
    admin = await _token(db, world, "admin")
    created = await client.post("/api/v1/users", headers=admin, json={
        "email": "Tech@Example.com", "password": "a long password", "name": "Tech"})
    assert created.status_code == 201 and created.json()["email"] == "tech@example.com"
    uid = created.json()["id"]
    _error(await client.post("/api/v1/users", headers=admin, json={
        "email": "TECH@example.com", "password": "another password"}), 409, "email_taken")
    grant = await client.post("/api/v1/role-assignments", headers=admin, json={
        "user_id": uid, "role": "user", "customer_id": world.customer["A"]})
    assert grant.status_code == 201
    _error(await client.post("/api/v1/role-assignments", headers=admin, json={
        "user_id": uid, "role": "user", "customer_id": world.customer["A"]}), 409,
        "role_assignment_exists")
    error = _error(await client.post("/api/v1/role-assignments", headers=admin, json={
        "user_id": uid, "role": "superuser"}), 422, "invalid_input")
    assert error["field"] == "role"
    login = await client.post("/api/v1/auth/login", json={"email": "tech@example.com",
                                                          "password": "a long password"})
    assert login.status_code == 200 and login.json()["roles"][0]["role"] == "user"
    listed = await client.get("/api/v1/role-assignments", headers=admin,
                              params={"user_id": uid})
    assert [r["id"] for r in listed.json()] == [grant.json()["id"]]
    assert (await client.delete(f"/api/v1/role-assignments/{grant.json()['id']}",
                                headers=admin)).status_code == 204
    viewer_list = await client.get("/api/v1/users", headers=await _token(db, world, "viewer@A"))
    assert [u["id"] for u in viewer_list.json()] == [world.users["viewer@A"]]


async def test_jobs_and_log(client: httpx.AsyncClient, db: Database, world: World) -> None:
    viewer = await _token(db, world, "viewer@A")
    listed = await client.get("/api/v1/jobs", headers=viewer)
    assert {j["id"] for j in listed.json()} == {world.job["A"], world.job["A1"]}
    job = await client.get(f"/api/v1/jobs/{world.job['A1']}", headers=viewer)
    assert job.json()["device_name"] == "Printer A1"
    log = await client.get(f"/api/v1/jobs/{world.job['A1']}/log", headers=viewer)
    assert log.status_code == 200
    assert [e["url"] for e in log.json()["entries"]] == ["/"]
    csv = await client.get(f"/api/v1/jobs/{world.job['A1']}/log", headers=viewer,
                           params={"format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    _error(await client.get(f"/api/v1/jobs/{world.job['B']}", headers=viewer), 404,
           "not_found")
    _error(await client.get("/api/v1/jobs", headers=viewer, params={"status": "exploded"}),
           422, "invalid_input")


async def _count(db: Database, model: type) -> int:
    async with db.transaction() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize(("method", "path", "body", "status", "code", "field"), [
    ("post", "/api/v1/devices", {"installation_id": "{A}", "name": "P", "ip": "999.1.1.1",
                                 "mac": "00:00:5e:00:53:01"}, 422, "invalid_input", "ip"),
    ("post", "/api/v1/devices", {"installation_id": "{A}", "name": "P", "ip": "10.0.0.1",
                                 "mac": "00:00:5e:00:53:01", "snmp_port": 70000}, 422,
     "out_of_range", "snmp_port"),
    ("post", "/api/v1/devices", {"installation_id": "{A}", "name": "P", "ip": "10.0.0.1",
                                 "mac": "00:00:5e:00:53:01", "colour": "red"}, 422,
     "unknown_field", "colour"),
    ("post", "/api/v1/devices", {"installation_id": "{A}", "ip": "10.0.0.1"}, 422,
     "missing_field", "name"),
    ("post", "/api/v1/devices", {"installation_id": "{A}", "name": "P", "ip": "10.0.0.1",
                                 "mac": "x", "ews_endpoints": [{"scheme": "gopher",
                                                                "port": 70}]}, 422,
     "invalid_input", "ews_endpoints[0].scheme"),
    ("post", "/api/v1/devices", {"installation_id": "{A}", "name": "P", "ip": "10.0.0.1",
                                 "mac": "00:00:5e:00:53:01",
                                 "remote_technician_enabled": True}, 422, "unknown_field",
     "remote_technician_enabled"),
    ("patch", "/api/v1/customers/{cA}", {"parent_id": "{cA1}"}, 422, "customer_cycle",
     "parent_id"),
    ("patch", "/api/v1/devices/{dA}", {"snmp_port": -1}, 422, "out_of_range", "snmp_port"),
    ("post", "/api/v1/users", {"email": "a@b.example", "password": "short"}, 422,
     "weak_password", "password"),
    ("post", "/api/v1/users", {"email": "a@b.example", "password": "long enough",
                               "is_admin": True}, 422, "unknown_field", "is_admin"),
    ("post", "/api/v1/installations/{A}/enrolment-tokens", {"lifetime_hours": 100000}, 422,
     "out_of_range", "lifetime_hours"),
    ("get", "/api/v1/devices/99999999999999", None, 422, "invalid_input", "device_id"),
    ("get", "/api/v1/devices/abc", None, 422, "invalid_input", "device_id"),
    ("get", "/api/v1/devices?limit=0", None, 422, "invalid_input", "limit"),
    ("get", "/api/v1/nothing-here", None, 404, "not_found", None),
    ("delete", "/api/v1/jobs/1", None, 405, "method_not_allowed", None),
])
async def test_bad_input_gets_a_json_error_naming_the_field(
        client: httpx.AsyncClient, db: Database, world: World, method: str, path: str,
        body: dict[str, Any] | None, status: int, code: str, field: str | None) -> None:
    ids = {"{A}": world.installation["A"], "{cA}": world.customer["A"],
           "{cA1}": world.customer["A1"], "{dA}": world.device["A"]}
    for key, value in ids.items():
        path = path.replace(key, str(value))
    if body is not None:
        body = {k: ids.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    before = (await _count(db, Device), await _count(db, Customer), await _count(db, User))
    admin = await _token(db, world, "admin")
    response = await client.request(method, path, json=body, headers=admin)
    error = _error(response, status, code)
    assert error.get("field") == field
    if field:
        assert field.split("[")[0].split(".")[0] in error["message"]
    assert (await _count(db, Device), await _count(db, Customer),
            await _count(db, User)) == before
    async with db.transaction() as s:
        customer = await s.get(Customer, world.customer["A"])
        assert customer is not None and customer.parent_id is None


async def test_malformed_json_is_refused(client: httpx.AsyncClient, db: Database,
                                         world: World) -> None:
    admin = await _token(db, world, "admin")
    response = await client.post("/api/v1/customers", content=b'{"name": "x",',
                                 headers={**admin, "Content-Type": "application/json"})
    assert "not valid JSON" in _error(response, 400, "malformed_json")["message"]
    not_object = await client.post("/api/v1/customers", json=["x"], headers=admin)
    _error(not_object, 422, "invalid_input")


async def test_login_only_accepts_json(client: httpx.AsyncClient, world: World) -> None:
    """A cross-site form can post text/plain but never application/json without CORS, so a
    login body that is not declared JSON must not log anyone in (login CSRF)."""
    body = json.dumps({"email": world.emails["viewer@A"], "password": WORLD_PASSWORD})
    response = await client.post("/api/v1/auth/login", content=body.encode(),
                                 headers={"Content-Type": "text/plain"})
    _error(response, 422, "invalid_input")
    assert "set-cookie" not in response.headers


async def test_a_jobs_tunnel_reports_are_listed_to_those_who_see_the_job(
        client: httpx.AsyncClient, db: Database, world: World) -> None:
    import datetime as dt

    from ewsgate.portal.store.models import TunnelReport

    async with db.transaction() as s:
        s.add(TunnelReport(job_id=world.job["A1"], session_id="sess", installation_id=None,
                           at=dt.datetime.now(dt.UTC), kind="relay_cut",
                           code="ENHANCE_YOUR_CALM", budget="early_resets", count=1,
                           detail="the relay kept breaking the agent's rules"))
    viewer = await _token(db, world, "viewer@A")
    listed = await client.get(f"/api/v1/jobs/{world.job['A1']}/tunnel-reports", headers=viewer)
    assert listed.status_code == 200
    assert [(r["kind"], r["budget"]) for r in listed.json()] == [("relay_cut", "early_resets")]
    _error(await client.get(f"/api/v1/jobs/{world.job['B']}/tunnel-reports", headers=viewer),
           404, "not_found")


async def test_reenrolment_needs_an_explicit_replacement_and_is_in_the_history(
        client: httpx.AsyncClient, db: Database, world: World) -> None:
    from ewsgate.portal.store.models import Installation

    admin = await _token(db, world, "admin")
    sid = world.installation["A1"]
    url = f"/api/v1/installations/{sid}/enrolment-tokens"
    first = await client.post(url, headers=admin)
    assert first.status_code == 201 and first.json()["purpose"] == "enrol"
    _error(await client.post(url, headers=admin, json={"purpose": "replace"}), 409,
           "installation_not_enrolled")
    async with db.transaction() as s:  # as an enrolment does
        installation = await s.get(Installation, sid)
        assert installation is not None
        installation.cert_serial, installation.cert_not_after = "ab12", WORLD_NOW
    refused = _error(await client.post(url, headers=admin), 409, "installation_enrolled")
    assert "replace" in refused["message"]
    replace = await client.post(url, headers=admin, json={"purpose": "replace"})
    assert replace.status_code == 201 and replace.json()["purpose"] == "replace"
    _error(await client.post(url, headers=await _token(db, world, "user@A")), 403, "forbidden")
    history = await client.get(url, headers=admin)
    assert history.status_code == 200
    rows = history.json()
    assert [r["purpose"] for r in rows] == ["replace", "enrol"]
    assert rows[0]["revoked_at"] is None and rows[1]["revoked_at"] is not None
    assert {r["created_by_email"] for r in rows} == {world.emails["admin"]}
    assert all("token" not in key for r in rows for key in r)
    _error(await client.get(url, headers=await _token(db, world, "viewer@dealer")), 403,
           "forbidden")
