"""create_app and PortalConfig: configuration from flag values, background services started in
order and stopped in reverse, security headers on API responses."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ewsgate.config import ConfigError, parse_host_port
from ewsgate.portal.app import context_of, create_app
from ewsgate.portal.context import BackgroundService, PortalConfig


def test_config_defaults_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    config = PortalConfig.from_values({"data_dir": tmp_path, "listen":
                                       parse_host_port("127.0.0.1:9000")})
    assert config.database_url == f"sqlite+aiosqlite:///{tmp_path / 'portal.sqlite3'}"
    assert config.public_url == "http://127.0.0.1:9000"
    assert config.auth.cookie_name == "ewsgate_session" and not config.auth.cookie_secure


def test_https_public_url_makes_the_cookie_secure(tmp_path: Path) -> None:
    config = PortalConfig.from_values({"data_dir": tmp_path,
                                       "public_url": "https://portal.example.com/",
                                       "session_lifetime": 3600.0,
                                       "session_idle_timeout": 600.0})
    assert config.public_url == "https://portal.example.com"
    assert config.auth.cookie_secure and config.auth.cookie_name.startswith("__Host-")
    assert config.auth.session_lifetime.total_seconds() == 3600
    assert config.auth.idle_timeout.total_seconds() == 600
    with pytest.raises(AttributeError):
        config.public_url = "x"  # type: ignore[misc]


def test_bad_database_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--database-url"):
        PortalConfig.from_values({"data_dir": tmp_path, "database_url": "oracle://x"})


class Recorder:
    def __init__(self, name: str, events: list[str], fail: bool = False) -> None:
        self.name, self.events, self.fail = name, events, fail

    async def start(self) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} cannot start")
        self.events.append(f"start {self.name}")

    async def stop(self) -> None:
        self.events.append(f"stop {self.name}")


async def test_background_services_start_in_order_and_stop_in_reverse(tmp_path: Path) -> None:
    events: list[str] = []
    config = PortalConfig.from_values({"data_dir": tmp_path})
    app = create_app(config, background=[Recorder("a", events), Recorder("b", events)],
                     ui=False)
    late = Recorder("c", events)
    assert isinstance(late, BackgroundService)
    context_of(app).background.append(late)  # what `ewsgate portal` does before serving
    async with app.router.lifespan_context(app):
        assert events == ["start a", "start b", "start c"]
    assert events[3:] == ["stop c", "stop b", "stop a"]


async def test_a_failing_start_stops_what_already_started(tmp_path: Path) -> None:
    events: list[str] = []
    app = create_app(PortalConfig.from_values({"data_dir": tmp_path}), ui=False,
                     background=[Recorder("a", events), Recorder("b", events, fail=True)])
    with pytest.raises(RuntimeError, match="b cannot start"):
        async with app.router.lifespan_context(app):
            pass  # pragma: no cover
    assert events == ["start a", "stop a"]


async def test_api_errors_carry_the_security_headers(tmp_path: Path) -> None:
    app = create_app(PortalConfig.from_values({"data_dir": tmp_path}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as http:
        response = await http.get("/api/v1/devices")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        page = await http.get("/no-such-page")
        assert page.status_code == 404  # outside /api/ the API's error envelope is not used
        assert "error" not in page.text and "content-security-policy" in page.headers
