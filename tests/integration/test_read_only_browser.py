"""A read-only session in Chromium, end to end on the shared ``demo`` stack: the technician
asks for read-only, the portal puts it in the tunnel ticket, and the relay refuses the device's
settings form POST with its read-only page; the job's Remote Technician Log shows the refusal.
The pages themselves (GET) still arrive."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import BrowserContext

from ewsgate.demo import DemoInfo

from .conftest import OpenedSession, sign_in
from .test_remote_session_browser import (  # noqa: F401  (fixtures)
    _device_page_in_tab,
    _end,
    _shot,
    browser,
    context,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(180)]


def _open_read_only(info: DemoInfo, profile: str) -> OpenedSession:
    client, csrf = sign_in(info, "technician")
    device = info.device(profile)
    answer = client.post(f"{info.api_url}/devices/{device.id}/remote-sessions",
                         json={"read_only": True, "reason": "check the toner settings"},
                         headers={"X-CSRF-Token": csrf, "Origin": info.portal_url})
    assert answer.status_code == 201, answer.text
    session = answer.json()
    deadline = time.monotonic() + 30
    while session["status"] not in ("ready", "failed", "ended"):
        assert time.monotonic() < deadline, f"session not ready: {session}"
        time.sleep(0.1)
        session = client.get(f"{info.api_url}/remote-sessions/{session['session_id']}").json()
    assert session["status"] == "ready", session
    return OpenedSession(client, session, csrf)


def test_read_only_session_refuses_the_settings_form_and_logs_it(
        demo: DemoInfo, context: BrowserContext) -> None:  # noqa: F811
    opened = _open_read_only(demo, "absolute")
    try:
        page = _device_page_in_tab(context, demo, opened, "/app/settings.html")
        assert page.locator("#settings-form").count() == 1  # the page itself arrives
        with page.expect_response(lambda r: r.request.method == "POST") as answered:
            page.click("#apply")
        assert answered.value.status == 403
        page.wait_for_load_state("load")
        content = page.content()
        assert "Read-only session" in content and "POST would change the device" in content
        _shot(page, "07-read-only-refused")
        entries: list[dict[str, Any]] = []
        for _ in range(100):
            entries = opened.client.get(
                f"{demo.api_url}/jobs/{opened.session['job_id']}/log").json()["entries"]
            if any(e["method"] == "POST" for e in entries):
                break
            page.wait_for_timeout(200)
        post = next(e for e in entries if e["method"] == "POST")
        assert (post["status"], post["outcome"], post["detail"]) == (403, "refused",
                                                                     "read_only"), post
        log = opened.client.get(f"{demo.api_url}/jobs/{opened.session['job_id']}/log").json()
        assert log["purpose"]["read_only"] is True
    finally:
        _end(demo, opened)
