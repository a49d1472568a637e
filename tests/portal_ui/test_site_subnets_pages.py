"""Web UI: an Administrator sets an installation's site subnets; a bad list is refused in
words on the page and nothing is written."""

from __future__ import annotations

import re

import pytest

from .ui_world import csrf_of, sign_in

pytestmark = pytest.mark.db


def _action(page: str) -> str:
    match = re.search(r'action="(/installations/\d+/site-subnets)"', page)
    assert match, "no site subnets form"
    return match.group(1)


async def test_admin_sets_site_subnets_and_a_bad_one_is_refused(client, seeded):
    await sign_in(client, seeded.email["admin"])
    page = await client.get("/installations")
    action = _action(page.text)
    saved = await client.post(action, data={"csrf_token": csrf_of(page.text),
                                            "site_subnets": "10.20.0.0/24, 10.20.8.0/22"})
    assert saved.status_code == 303, saved.text
    shown = await client.get(saved.headers["location"])
    assert "The site subnets were saved" in shown.text
    assert 'value="10.20.0.0/24, 10.20.8.0/22"' in shown.text
    refused = await client.post(action, data={"csrf_token": csrf_of(shown.text),
                                              "site_subnets": "10.20.0.7/24"})
    assert refused.status_code == 422
    assert "has host bits set; did you mean 10.20.0.0/24?" in refused.text
    again = await client.get("/installations")
    assert 'value="10.20.0.0/24, 10.20.8.0/22"' in again.text


async def test_installation_created_with_site_subnets(client, seeded):
    await sign_in(client, seeded.email["admin"])
    page = await client.get("/installations")
    created = await client.post("/installations", data={
        "csrf_token": csrf_of(page.text), "name": "Depot", "site_subnets": "192.168.40.0/24",
        "customer_id": str(seeded.customer["bluebell"])})
    assert created.status_code == 201, created.text
    assert 'value="192.168.40.0/24"' in created.text
    bad = await client.post("/installations", data={
        "csrf_token": csrf_of(page.text), "name": "Nowhere", "site_subnets": "127.0.0.0/8",
        "customer_id": str(seeded.customer["bluebell"])})
    assert bad.status_code == 422 and 'id="site_subnets-error"' in bad.text


async def test_a_viewer_sees_the_subnets_but_no_form(client, seeded):
    await sign_in(client, seeded.email["viewer"])
    page = await client.get("/installations")
    assert "/site-subnets" not in page.text and "Site subnets" in page.text
