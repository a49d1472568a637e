"""The real portal application (``create_app``) for the HTTP-level tests, on the world of
rt_world.py: its control server is a stand-in carrying the world's scripted hub and a CA."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from ewsgate.pki import CertificateAuthority, create_ca
from ewsgate.portal.app import create_app
from ewsgate.portal.auth import AuthSettings, LoginRateLimiter, login
from ewsgate.portal.context import PortalConfig
from ewsgate.portal.services.users import issue_api_token
from ewsgate.portal.sessions.runtime import RemoteTechnician
from sessions.rt_world import ISSUER, PASSWORD, T0, RtWorld, ScriptedHub

BASE = ISSUER


@dataclass
class FakeControlServer:
    """What Remote Technician looks for among the portal's background services."""

    hub: ScriptedHub
    ca: CertificateAuthority
    name: str = "control server (test stand-in)"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


@dataclass
class Portal:
    world: RtWorld
    app: FastAPI
    rt: RemoteTechnician
    auth: AuthSettings
    limiter: LoginRateLimiter
    ca: CertificateAuthority

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE)

    async def sign_in(self, client: httpx.AsyncClient, who: str) -> str:
        """Give ``client`` a web-session cookie for ``who``; returns the CSRF token."""
        async with self.world.db.transaction() as s:
            result = await login(s, self.world.emails[who], PASSWORD, settings=self.auth,
                                 limiter=self.limiter, clock=self.world.clock)
        client.cookies.set(self.auth.cookie_name, result.cookie_value)
        return result.session.csrf_token

    async def token(self, who: str) -> str:
        async with self.world.db.transaction() as s:
            issued = await issue_api_token(s, self.world.users[who], "test",
                                           clock=self.world.clock)
        return issued.token


_CA: list[CertificateAuthority] = []


def _ca() -> CertificateAuthority:
    if not _CA:
        _CA.append(create_ca(now=T0))
    return _CA[0]


@pytest.fixture
async def portal(rt: RtWorld, tmp_path: Path) -> AsyncIterator[Portal]:
    config = PortalConfig(data_dir=tmp_path / "data", database_url=rt.db.url, public_url=ISSUER)
    ca = _ca()
    app = create_app(config, database=rt.db, clock=rt.clock,
                     background=[FakeControlServer(rt.hub, ca)])
    remote: RemoteTechnician = app.state.ewsgate_rt
    # the world's helpers (settle, actor...) look at the app's own services from here on
    await rt.sessions.aclose()
    rt.sessions, rt.oauth, rt.keys, rt.issuer = (remote.sessions, remote.oauth, remote.keys,
                                                 remote.issuer)
    ctx = app.state.portal
    yield Portal(rt, app, remote, config.auth, ctx.login_limiter, ca)
