"""The customer policy page: an Administrator sets it, a child inherits and cannot loosen it,
a Viewer reads it without a form, another customer's viewer gets 404."""

from __future__ import annotations

import pytest

from .ui_world import csrf_of, sign_in

pytestmark = pytest.mark.db


async def test_admin_sets_a_policy_and_the_child_inherits_it(client, seeded):
    await sign_in(client, seeded.email["admin"])
    acme, warehouse = seeded.customer["acme"], seeded.customer["warehouse"]
    page = await client.get(f"/customers/{acme}")
    assert f'href="/customers/{acme}/policy"' in page.text
    page = await client.get(f"/customers/{acme}/policy")
    assert page.status_code == 200 and 'id="policy-form"' in page.text
    response = await client.post(f"/customers/{acme}/policy", data={
        "csrf_token": csrf_of(page.text), "approval": "required", "reason": "required",
        "mode": "", "allow_panel": "", "idle_timeout_minutes": "7",
        "max_sessions_per_device": "", "max_sessions_per_user_per_device": "",
        "approval_expiry_minutes": "", "timezone": "America/Sao_Paulo",
        "hours": "mon 08:00-18:00\ntue 08:00-12:00"})
    assert response.status_code == 303, response.text
    child = await client.get(f"/customers/{warehouse}/policy")
    effective = child.text.split('id="effective-policy"', 1)[1].split("</dl>", 1)[0]
    assert "<dd>required</dd>" in effective and "7 min" in effective
    assert "America/Sao_Paulo: mon 08:00\u201318:00, tue 08:00\u201312:00" in effective
    # the child tries to loosen: the effective policy stays as strict
    response = await client.post(f"/customers/{warehouse}/policy", data={
        "csrf_token": csrf_of(child.text), "approval": "none", "reason": "optional",
        "idle_timeout_minutes": "30"})
    assert response.status_code == 303
    child = await client.get(f"/customers/{warehouse}/policy")
    effective = child.text.split('id="effective-policy"', 1)[1].split("</dl>", 1)[0]
    assert "<dt>Approval</dt><dd>required</dd>" in effective and "7 min" in effective


async def test_a_bad_policy_is_shown_with_its_reason(client, seeded):
    await sign_in(client, seeded.email["admin"])
    acme = seeded.customer["acme"]
    page = await client.get(f"/customers/{acme}/policy")
    response = await client.post(f"/customers/{acme}/policy", data={
        "csrf_token": csrf_of(page.text), "idle_timeout_minutes": "45"})
    assert response.status_code == 422
    assert "1 to 30" in response.text
    response = await client.post(f"/customers/{acme}/policy", data={
        "csrf_token": csrf_of(page.text), "timezone": "Mars/Olympus",
        "hours": "mon 08:00-18:00"})
    assert response.status_code == 422 and "unknown time zone" in response.text


async def test_viewers_read_the_policy_and_others_get_404(client, seeded):
    await sign_in(client, seeded.email["viewer"])
    acme = seeded.customer["acme"]
    page = await client.get(f"/customers/{acme}/policy")
    assert page.status_code == 200 and 'id="policy-form"' not in page.text
    assert 'id="effective-policy"' in page.text
    await client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    await sign_in(client, seeded.email["outsider"])
    assert (await client.get(f"/customers/{acme}/policy")).status_code == 404
