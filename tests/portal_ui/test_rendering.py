"""Template filters and the renderer: relative times from the injected clock, sizes, labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ewsgate.portal.ui.rendering import Renderer, ago, filesize, job_type_label, make_label

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(seconds=5), "just now"),
    (timedelta(minutes=5), "5 min ago"),
    (timedelta(hours=3), "3 h ago"),
    (timedelta(days=1), "1 day ago"),
    (timedelta(days=3), "3 days ago"),
    (timedelta(hours=-24), "in 1 day"),
    (timedelta(days=400), "2025-10-24"),
])
def test_ago_reads_like_a_person_would_say_it(delta, text):
    assert ago(NOW - delta, NOW) == text


def test_ago_of_nothing_is_never():
    assert ago(None, NOW) == "never"


@pytest.mark.parametrize(("count", "text"), [
    (0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 1024 * 1024, "5.0 MiB"), (None, "—")])
def test_filesize(count, text):
    assert filesize(count) == text


def test_labels():
    assert make_label("konica") == "Konica Minolta"
    assert make_label("acme") == "acme"
    assert job_type_label("open_device_web_page") == "Open Device Web Page"
    assert job_type_label("firmware_upgrade") == "Firmware upgrade"


def test_static_url_carries_a_content_hash_and_refuses_escapes():
    renderer = Renderer(lambda: NOW)
    url = renderer.static_url("css/portal.css")
    assert url.startswith("/static/css/portal.css?v=") and len(url.split("=")[1]) == 10
    with pytest.raises(FileNotFoundError):
        renderer.static_url("../templates/base.html")


def test_page_escapes_values_and_is_never_cached():
    renderer = Renderer(lambda: NOW)
    response = renderer.page("message.html", {
        "title": "<b>t</b>", "message": "<script>alert(1)</script>", "back_href": None,
        "nav_items": [], "nav": "", "me": {"display_name": "A", "roles_label": "Viewer"},
        "csrf_token": "c", "notice": None, "error": None})
    body = response.body.decode()
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert response.headers["cache-control"] == "no-store"


def test_templates_hold_no_inline_script_or_style():
    """The CSP forbids inline code; a template that relied on it would silently break."""
    import re

    from ewsgate.portal.ui.rendering import TEMPLATE_DIR

    for path in TEMPLATE_DIR.rglob("*.html"):
        text = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), path
        assert not re.search(r"\sstyle=", text), path
        assert not re.search(r"\son[a-z]+=", text), path
        assert "<style" not in text, path


def test_ui_config_from_the_portal_context_names_the_agents_enrolment_address(tmp_path):
    """Agents enrol at the enrolment port (the gRPC port + 1 unless configured), on the public
    host when the listener is bound to every interface."""
    from ewsgate.config import parse_host_port
    from ewsgate.portal.context import PortalConfig, PortalContext
    from ewsgate.portal.store.db import Database
    from ewsgate.portal.ui import UIConfig

    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.sqlite3'}")
    wide = PortalContext(PortalConfig(grpc_listen=parse_host_port("0.0.0.0:9443"),
                                      public_url="https://portal.example.com",
                                      data_dir=tmp_path), database)
    config = UIConfig.from_context(wide)
    assert config.enrol_address == "portal.example.com:9444"
    assert config.limiter is wide.login_limiter
    assert config.display_token("ewse_secret") == "ewse_secret"  # no CA yet: the bare secret
    local = PortalContext(PortalConfig(grpc_listen=parse_host_port("127.0.0.1:8001"),
                                       data_dir=tmp_path), database)
    assert UIConfig.from_context(local).enrol_address == "127.0.0.1:8002"
