"""The policy and approval REST API on an ASGI portal: GET/PUT policy, effective policy, a
request that waits, its approval by a Customer Approver, a denial the technician reads, 404
outside the approver's customer."""

from __future__ import annotations

import pytest

from sessions.rt_http import Portal
from sessions.rt_world import settle

pytestmark = pytest.mark.db


async def _bearer(portal: Portal, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await portal.token(who)}"}


async def test_policy_api_and_an_approved_request(portal: Portal) -> None:
    w = portal.world
    a, device = w.customer["A"], w.device["on"]
    async with portal.client() as client:
        admin, tech = await _bearer(portal, "admin"), await _bearer(portal, "tech")
        approver, outsider = await _bearer(portal, "approverA"), await _bearer(portal,
                                                                              "approverB")
        r = await client.put(f"/api/v1/customers/{a}/policy", headers=admin, json={
            "approval": "required", "reason": "required", "idle_timeout_minutes": 5})
        assert r.status_code == 200, r.text
        assert r.json()["effective"]["approval"] == "required"
        r = await client.put(f"/api/v1/customers/{a}/policy", headers=approver,
                             json={"approval": "none"})
        assert r.status_code == 403
        r = await client.put(f"/api/v1/customers/{a}/policy", headers=admin,
                             json={"idle_timeout_minutes": 90})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_policy"
        assert "idle_timeout_minutes must be 1 to 30" in r.json()["error"]["message"]
        r = await client.get(f"/api/v1/customers/{a}/policy", headers=outsider)
        assert r.status_code == 404
        r = await client.get(f"/api/v1/devices/{device}/effective-policy", headers=approver)
        assert r.json()["policy"]["idle_timeout_minutes"] == 5
        assert r.json()["policy"]["max_sessions_per_device"] == 3

        r = await client.post(f"/api/v1/devices/{device}/remote-sessions", headers=tech,
                              json={"reason": "toner"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "approval_required"
        r = await client.post(f"/api/v1/devices/{device}/session-requests", headers=tech,
                              json={})
        assert r.status_code == 422 and r.json()["error"]["code"] == "reason_required"
        r = await client.post(f"/api/v1/devices/{device}/session-requests", headers=tech,
                              json={"reason": "scan to e-mail fails", "ticket": "INC-42"})
        assert r.status_code == 202, r.text
        request_id = r.json()["request"]["id"]
        r = await client.get("/api/v1/session-requests", headers=approver)
        [seen] = r.json()["requests"]
        assert (seen["reason"], seen["ticket"], seen["user_email"]) == (
            "scan to e-mail fails", "INC-42", "tech@example.com")
        assert (await client.get("/api/v1/session-requests", headers=outsider)
                ).json()["requests"] == []
        r = await client.post(f"/api/v1/session-requests/{request_id}/approve",
                              headers=outsider, json={})
        assert r.status_code == 404
        r = await client.post(f"/api/v1/session-requests/{request_id}/approve",
                              headers=approver, json={"reason": "go ahead"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["request"]["status"] == "used"
        assert body["request"]["decided_by"] == "approvera@example.com"
        assert body["session"]["user_email"] == "tech@example.com"
        await settle(w)
        r = await client.get(f"/api/v1/session-requests/{request_id}", headers=tech)
        assert r.json()["session_id"] == body["session"]["session_id"]


async def test_a_denied_request_shows_who_and_why(portal: Portal) -> None:
    w = portal.world
    async with portal.client() as client:
        admin, tech = await _bearer(portal, "admin"), await _bearer(portal, "tech")
        approver = await _bearer(portal, "approverA")
        await client.put(f"/api/v1/customers/{w.customer['A']}/policy", headers=admin,
                         json={"approval": "required"})
        r = await client.post(f"/api/v1/devices/{w.device['on']}/session-requests",
                              headers=tech, json={"read_only": True})
        request_id = r.json()["request"]["id"]
        r = await client.post(f"/api/v1/session-requests/{request_id}/deny", headers=approver,
                              json={})
        assert r.status_code == 422
        r = await client.post(f"/api/v1/session-requests/{request_id}/deny", headers=approver,
                              json={"reason": "not during the audit"})
        assert r.status_code == 200
        r = await client.get(f"/api/v1/session-requests/{request_id}", headers=tech)
        assert (r.json()["status"], r.json()["decided_by"], r.json()["decision_reason"]) == (
            "denied", "approvera@example.com", "not during the audit")



async def test_the_log_export_says_why_and_who_approved(portal: Portal) -> None:
    w = portal.world
    async with portal.client() as client:
        admin, tech = await _bearer(portal, "admin"), await _bearer(portal, "tech")
        approver = await _bearer(portal, "approverA")
        await client.put(f"/api/v1/customers/{w.customer['A']}/policy", headers=admin,
                         json={"approval": "required"})
        r = await client.post(f"/api/v1/devices/{w.device['on']}/session-requests",
                              headers=tech, json={"reason": "fuser error", "ticket": "INC-9"})
        request_id = r.json()["request"]["id"]
        r = await client.post(f"/api/v1/session-requests/{request_id}/approve",
                              headers=approver, json={})
        job_id = r.json()["session"]["job_id"]
        await settle(w)
        body = (await client.get(f"/api/v1/jobs/{job_id}/log", headers=tech)).json()
        assert body["purpose"] == {"reason": "fuser error", "ticket": "INC-9",
                                   "read_only": False}
        assert body["approval"]["approved_by"] == "approvera@example.com"
        text = (await client.get(f"/api/v1/jobs/{job_id}/log?format=csv", headers=tech)).text
        assert text.splitlines()[1].startswith("purpose,") and "ticket: INC-9" in text
        assert "approved by approvera@example.com" in text
        har = (await client.get(f"/api/v1/jobs/{job_id}/log?format=har", headers=tech)).json()
        assert "reason: fuser error" in har["log"]["comment"]
