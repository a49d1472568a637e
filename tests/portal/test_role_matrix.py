"""The whole permission matrix: role x action x (in scope / out of scope), every cell asserted.

The expected outcomes are written out below by hand from the product rules (issue: roles),
not derived from the code under test. Each role is tried twice: scoped to customer A (whose
nested child A1 is "in scope"; B of the same dealer and X of another dealer are "out") and
dealer-wide (B in scope; X out). Each cell runs in a transaction that is rolled back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from portal_world import WORLD_NOW, World, build_world
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.services import (
    Actor,
    Conflict,
    NotFound,
    PermissionDenied,
    ServiceError,
    actor_for,
    audit,
    customers,
    devices,
    installations,
    jobs,
    policies,
    users,
)
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import RoleAssignment, User

pytestmark = pytest.mark.db

OK, FORBIDDEN, NOT_FOUND, CONFLICT = "ok", "forbidden", "not_found", "conflict"

# action -> outcome in scope for (administrator, configurer, user, viewer, approver).
# A Customer Approver sees what a Viewer sees and changes nothing here; it answers session
# requests (tests/sessions/test_policy_sessions.py) and reads, never sets, the policy.
# Out of scope every action is NOT_FOUND (lists: the object is absent).
IN_SCOPE: dict[str, tuple[str, str, str, str, str]] = {
    "get_customer":             (OK, OK, OK, OK, OK),
    "list_customers":           (OK, OK, OK, OK, OK),
    "create_child_customer":    (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "rename_customer":          (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    # delete_customer: the customer has a site
    "delete_customer":          (CONFLICT, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "get_installation":         (OK, OK, OK, OK, OK),
    "list_installations":       (OK, OK, OK, OK, OK),
    "create_installation":      (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "rename_installation":      (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "delete_installation":      (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "create_enrolment_token":   (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "get_device":               (OK, OK, OK, OK, OK),
    "list_devices":             (OK, OK, OK, OK, OK),
    "create_device":            (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "update_device":            (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "delete_device":            (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "enable_remote_technician": (FORBIDDEN, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "disable_remote_technician": (FORBIDDEN, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "open_session":             (FORBIDDEN, FORBIDDEN, OK, FORBIDDEN, FORBIDDEN),
    "get_job":                  (OK, OK, OK, OK, OK),
    "list_jobs":                (OK, OK, OK, OK, OK),
    "get_job_log":              (OK, OK, OK, OK, OK),
    "grant_role":               (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    # list_role_assignments: others' grants are hidden
    "list_role_assignments":    (OK, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND),
    "get_policy":               (OK, OK, OK, OK, OK),
    "get_effective_policy":     (OK, OK, OK, OK, OK),
    "set_policy":               (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "list_audit_events":        (OK, NOT_FOUND, NOT_FOUND, NOT_FOUND, OK),  # API: 403 for them
}
ROLES = ("administrator", "configurer", "user", "viewer", "approver")
# (actor scope, target customer, in scope?)
PLACEMENTS = (("A", "A1", True), ("A", "B", False), ("A", "X", False),
              ("dealer", "B", True), ("dealer", "X", False))


def _present(found: bool) -> None:
    if not found:
        raise NotFound("absent from the list")


Action = Callable[[AsyncSession, Actor, World, str], Awaitable[None]]


async def _grant_target(s: AsyncSession, w: World, target: str) -> None:
    """A grant on the target customer, for list_role_assignments to find."""
    s.add(RoleAssignment(user_id=w.users["nobody"], role="viewer",
                         dealer_id=w.d2 if target == "X" else w.d1,
                         customer_id=w.customer[target], created_at=WORLD_NOW))
    await s.flush()


ACTIONS: dict[str, Action] = {
    "get_customer": lambda s, a, w, t: customers.get_customer(s, a, w.customer[t]),
    "list_customers": lambda s, a, w, t: _list(customers.list_customers(s, a),
                                               w.customer[t]),
    "create_child_customer": lambda s, a, w, t: customers.create_customer(
        s, a, {"name": "child", "parent_id": w.customer[t]}),
    "rename_customer": lambda s, a, w, t: customers.update_customer(
        s, a, w.customer[t], {"name": "renamed"}),
    "delete_customer": lambda s, a, w, t: customers.delete_customer(s, a, w.customer[t]),
    "get_installation": lambda s, a, w, t: installations.get_installation(
        s, a, w.installation[t]),
    "list_installations": lambda s, a, w, t: _list(installations.list_installations(s, a),
                                                   w.installation[t]),
    "create_installation": lambda s, a, w, t: installations.create_installation(
        s, a, {"customer_id": w.customer[t], "name": "new site"}),
    "rename_installation": lambda s, a, w, t: installations.update_installation(
        s, a, w.installation[t], {"name": "renamed"}),
    "delete_installation": lambda s, a, w, t: installations.delete_installation(
        s, a, w.installation[t]),
    "create_enrolment_token": lambda s, a, w, t: installations.create_enrolment_token(
        s, a, w.installation[t]),
    "get_device": lambda s, a, w, t: devices.get_device(s, a, w.device[t]),
    "list_devices": lambda s, a, w, t: _list(devices.list_devices(s, a), w.device[t]),
    "create_device": lambda s, a, w, t: devices.create_device(
        s, a, {"installation_id": w.installation[t], "name": "new", "ip": "192.0.2.99",
               "mac": "00:00:5e:00:53:01"}),
    "update_device": lambda s, a, w, t: devices.update_device(
        s, a, w.device[t], {"name": "renamed"}),
    "delete_device": lambda s, a, w, t: devices.delete_device(s, a, w.device[t]),
    "enable_remote_technician": lambda s, a, w, t: devices.set_remote_technician(
        s, a, w.device[t], True),
    "disable_remote_technician": lambda s, a, w, t: devices.set_remote_technician(
        s, a, w.device[t], False),
    "open_session": lambda s, a, w, t: devices.authorize_open_session(s, a, w.device[t]),
    "get_job": lambda s, a, w, t: jobs.get_job(s, a, w.job[t]),
    "list_jobs": lambda s, a, w, t: _list(jobs.list_jobs(s, a), w.job[t]),
    "get_job_log": lambda s, a, w, t: jobs.get_job_log(s, a, w.job[t]),
    "grant_role": lambda s, a, w, t: users.create_role_assignment(
        s, a, {"user_id": w.users["nobody"], "role": "viewer", "customer_id": w.customer[t]}),
    "list_role_assignments": lambda s, a, w, t: _list_grants(s, a, w, t),
    "get_policy": lambda s, a, w, t: policies.get_policy(s, a, w.customer[t]),
    "get_effective_policy": lambda s, a, w, t: policies.get_effective_policy(
        s, a, w.customer[t]),
    "set_policy": lambda s, a, w, t: policies.set_policy(
        s, a, w.customer[t], {"approval": "required", "idle_timeout_minutes": 5}),
    "list_audit_events": lambda s, a, w, t: _list_audit(s, a, w, t),
}


async def _list(rows: Awaitable[list[Any]], wanted: int) -> None:
    _present(any(row.id == wanted for row in await rows))


async def _list_grants(s: AsyncSession, a: Actor, w: World, target: str) -> None:
    await _grant_target(s, w, target)
    rows = await users.list_role_assignments(s, a)
    _present(any(r.customer_id == w.customer[target] and r.user_id == w.users["nobody"]
                 for r in rows))


async def _list_audit(s: AsyncSession, a: Actor, w: World, target: str) -> None:
    """An entry about the target customer is in the actor's view of the trail."""
    entry = await audit.record(s, "customer.update", actor=audit.SYSTEM,
                               target_id=w.customer[target], customer_id=w.customer[target],
                               dealer_id=w.d2 if target == "X" else w.d1)
    await s.flush()
    rows = await audit.list_events(s, await audit.audit_scope(s, a), audit.AuditFilter())
    _present(any(row.id == entry.id for row in rows))


def _cells() -> Iterator[Any]:
    for action, outcomes in IN_SCOPE.items():
        for role, in_scope_outcome in zip(ROLES, outcomes, strict=True):
            for scope, target, in_scope in PLACEMENTS:
                expected = in_scope_outcome if in_scope else NOT_FOUND
                yield pytest.param(action, role, scope, target, expected,
                                   id=f"{action}-{role}@{scope}-on-{target}")


def test_the_table_covers_every_action() -> None:
    assert set(IN_SCOPE) == set(ACTIONS)


@pytest.fixture(scope="module")
def matrix_db(module_database_url: str) -> Iterator[Database]:
    """One engine for the module; without a pool it works from each test's event loop."""
    database = Database(module_database_url, pool=False)
    yield database
    asyncio.run(database.dispose())


@pytest.fixture(scope="module")
def matrix_world(matrix_db: Database) -> World:
    return asyncio.run(build_world(matrix_db))


@pytest.mark.parametrize(("action", "role", "scope", "target", "expected"), list(_cells()))
async def test_role_matrix(matrix_db: Database, matrix_world: World, action: str,
                           role: str, scope: str, target: str, expected: str) -> None:
    async with matrix_db.sessions() as session:
        try:
            user = await session.get(User, matrix_world.users[f"{role}@{scope}"])
            assert user is not None
            actor = await actor_for(session, user)
            try:
                await ACTIONS[action](session, actor, matrix_world, target)
                outcome = OK
            except NotFound:
                outcome = NOT_FOUND
            except PermissionDenied:
                outcome = FORBIDDEN
            except Conflict:
                outcome = CONFLICT
            except ServiceError as exc:  # pragma: no cover - shows the surprise
                outcome = f"{type(exc).__name__}: {exc.message}"
        finally:
            await session.rollback()
    assert outcome == expected
