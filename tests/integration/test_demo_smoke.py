"""The whole system on loopback: a technician's session reaches a device page through the relay."""

from __future__ import annotations

import pytest

from ewsgate.demo import DemoInfo

from .conftest import open_session

pytestmark = [pytest.mark.integration]


def test_api_session_page_arrives_through_relay_after_oauth(demo: DemoInfo) -> None:
    opened = open_session(demo, "absolute")
    try:
        page = opened.client.get(opened.url, follow_redirects=True)
        assert page.status_code == 200, page.text[:500]
        assert str(page.url).startswith(opened.url)
        assert "Command Center RX" in page.text
        # the device's own absolute URLs now name the session origin
        assert f"http://127.0.0.1:{demo.device('absolute').http_port}" not in page.text
        assert opened.url.rstrip("/") in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
    finally:
        opened.client.delete(f"{demo.api_url}/remote-sessions/{opened.id}",
                             headers={"X-CSRF-Token": opened.csrf, "Origin": demo.portal_url})
        opened.client.close()
