"""Wiring of Remote Technician into the portal process.

The portal's ``create_app`` calls :func:`mount_from_context`, which builds a
:class:`RemoteTechnician` (:func:`build_remote_technician`: the signing keys in the data
directory, the OAuth server, the session service on the control hub of the portal's control
server) and hands it to :func:`mount_remote_technician`, which adds

- the OAuth 2.1 routes (``/oauth/authorize``, ``/oauth/token``,
  ``/.well-known/oauth-authorization-server``, ``/.well-known/jwks.json``),
- the REST API for sessions and the job log (:mod:`ewsgate.portal.api.remote_sessions`),
- the relay-facing API and ``/.well-known/ewsgate-ca.pem`` (:mod:`ewsgate.portal.api.relay_api`),
- the pages: the *Open device web page* handler, the session progress page, the live-sessions
  page and the job log fragment (:mod:`.pages`),

and keeps itself in ``app.state.ewsgate_rt``. :class:`RemoteTechnician` is a background
service of the portal (``start``: the sweeper — expiry, teardown, code pruning, each pass run
by exactly one replica; ``stop``).

The control hub and the CA are those of the portal's control server, found among the portal's
background services when needed (it has ``hub`` and ``ca``; it joins them after the app is
built); without one, starting a session fails with ``installation_offline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ewsgate.config import ConfigError
from ewsgate.pki import CertificateAuthority
from ewsgate.portal.auth import AuthSettings
from ewsgate.portal.control.hub import InstallationOffline
from ewsgate.portal.oauth.key_sync import SigningKeySync
from ewsgate.portal.oauth.keys import SigningKeys
from ewsgate.portal.oauth.routes import OAuthEndpoints
from ewsgate.portal.oauth.server import AuthorizationServer, OAuthConfig
from ewsgate.portal.oauth.tokens import TokenIssuer
from ewsgate.portal.sessions.naming import SessionConfig
from ewsgate.portal.sessions.requests import SessionRequests
from ewsgate.portal.sessions.service import CommandSender, RemoteSessions
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.sweep_lock import SweepLocks
from ewsgate.portal.ui.rendering import Renderer

__all__ = ["RemoteTechnician", "build_remote_technician", "mount_from_context",
           "mount_remote_technician", "remote_technician_of"]

log = logging.getLogger(__name__)


def _control_server(ctx: Any) -> Any:
    """The portal's control server among its background services (it has ``hub`` and ``ca``)."""
    return next((s for s in ctx.background if hasattr(s, "hub") and hasattr(s, "ca")), None)


class _ContextHub:
    """The control hub of the portal's control server, looked up when a command is sent (the
    control server joins the background services after the app is built)."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx

    async def send_command(self, installation_id: int, kind: str,
                           payload: Any = None, *, timeout: float = 30.0,  # noqa: ASYNC109
                           on_progress: Any = None) -> dict[str, Any]:
        from ewsgate.portal.control.routing import router_of

        router = router_of(self._ctx)
        if router is not None:  # in process, or to the replica holding the stream
            routed: dict[str, Any] = await router.send_command(
                installation_id, kind, payload, timeout=timeout, on_progress=on_progress)
            return routed
        control = _control_server(self._ctx)
        if control is None:
            raise InstallationOffline("this portal runs without its control server, so no "
                                      "installation can be reached")
        result: dict[str, Any] = await control.hub.send_command(
            installation_id, kind, payload, timeout=timeout, on_progress=on_progress)
        return result


@dataclass
class RemoteTechnician:
    """Everything Remote Technician needs in the portal process (a background service)."""

    name = "remote technician"

    db: Database
    keys: SigningKeys
    issuer: TokenIssuer
    oauth: AuthorizationServer
    sessions: RemoteSessions
    auth: AuthSettings
    clock: Callable[[], datetime]
    renderer: Renderer
    ca_source: Callable[[], CertificateAuthority | None] = lambda: None
    #: the portal's control server (its ``hub``), when it has one
    hub_source: Callable[[], Any] = lambda: None
    sweep_interval: float = 1.0
    #: exactly one replica runs each sweep pass (default: locks on ``db``)
    sweep_locks: SweepLocks | None = None
    _sweeper: asyncio.Task[None] | None = field(default=None, repr=False)
    #: the relays' event streams' shared poller (portal.sessions.revocation_stream), on demand
    revocation_streams: Any = field(default=None, repr=False)
    _ticks: int = field(default=0, repr=False)
    _requests: SessionRequests | None = field(default=None, repr=False)
    _locks: SweepLocks = field(init=False, repr=False)
    #: the signing keys kept in step with the other replicas through the database
    key_sync: SigningKeySync = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._locks = self.sweep_locks or SweepLocks(self.db)
        self.key_sync = SigningKeySync(self.db, self.keys)

    @property
    def requests(self) -> SessionRequests:
        """Session requests awaiting a Customer Approver (:mod:`.requests`)."""
        if self._requests is None:
            self._requests = SessionRequests(self.sessions)
        return self._requests

    @property
    def ca(self) -> CertificateAuthority | None:
        """The portal's CA (for relay certificates), if the portal has one."""
        return self.ca_source()

    async def start(self) -> None:
        """Start the sweeper (expiry, teardown of ended sessions, pruning of spent codes)."""
        if self._sweeper is None:
            try:  # before the first key is made, so that replicas agree on one
                await self.key_sync.sync()
            except Exception:
                log.exception("sharing the signing keys through the database failed; "
                              "retrying on every sweep")
            self._sweeper = asyncio.ensure_future(self._sweep_forever())

    def _listen_for_attaches(self) -> None:
        """Resume sessions when an installation's stream comes back (the control server joins
        the background services late, so this is retried on each sweep until it is there)."""
        hub = getattr(self.hub_source(), "hub", None)
        add = getattr(hub, "add_attach_listener", None)
        if callable(add):
            add(self.sessions.installation_connected)

    async def sweep_once(self) -> bool:
        """One pass, if this replica gets the sweep's lock (:mod:`~ewsgate.portal.store.
        sweep_lock`); True when it ran. Every 60th pass of a replica also prunes spent codes."""
        async with self._locks.hold("remote-sessions") as mine:
            if not mine:
                return False
            await self.sessions.sweep()
            await self.requests.expire()
        self._ticks += 1
        if self._ticks % 60 == 0:
            async with self._locks.hold("oauth-codes") as mine:
                if mine:
                    await self.oauth.prune()
        return True

    async def _sweep_forever(self) -> None:
        while True:
            try:
                self._listen_for_attaches()
                await self.key_sync.sync()  # every replica: keys made or retired elsewhere
                await self.sweep_once()
            except Exception:
                log.exception("Remote Technician sweep failed; retrying")
            await asyncio.sleep(self.sweep_interval)

    async def stop(self) -> None:
        """Stop the sweeper and the background commands."""
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the sweeper and the background commands."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await self.sessions.aclose()


def build_remote_technician(
    *,
    db: Database,
    data_dir: Path,
    public_url: str,
    hub: CommandSender,
    auth: AuthSettings,
    clock: Callable[[], datetime],
    session_config: SessionConfig | None = None,
    access_token_ttl_seconds: int = 30 * 60,
    ca_source: Callable[[], CertificateAuthority | None] = lambda: None,
) -> RemoteTechnician:
    """Load (or create) the signing keys under ``data_dir`` and build the services."""
    issuer_url = public_url.rstrip("/")
    keys = SigningKeys.open(data_dir, clock)
    issuer = TokenIssuer(keys, issuer_url, clock)
    oauth = AuthorizationServer(db, issuer, OAuthConfig(
        issuer=issuer_url, access_token_ttl_seconds=access_token_ttl_seconds), clock)
    sessions = RemoteSessions(db, hub, issuer, session_config or SessionConfig(), clock)
    return RemoteTechnician(db=db, keys=keys, issuer=issuer, oauth=oauth, sessions=sessions,
                            auth=auth, clock=clock, renderer=Renderer(clock),
                            ca_source=ca_source)


def mount_remote_technician(app: Any, rt: RemoteTechnician, *, pages: bool = True) -> None:
    """Add Remote Technician's routes to ``app`` (FastAPI) and keep ``rt`` in its state;
    ``pages`` adds the web pages too (they need the web UI mounted)."""
    from ewsgate.portal.api import policies, relay_api, remote_sessions
    from ewsgate.portal.sessions import pages as session_pages

    app.state.ewsgate_rt = rt
    endpoints = OAuthEndpoints(rt.oauth, rt.keys, rt.auth, rt.renderer, rt.clock,
                               refresh_keys=rt.key_sync.sync)
    for route in endpoints.routes():
        app.router.routes.append(route)
    app.include_router(remote_sessions.router)
    app.include_router(relay_api.router)
    app.include_router(policies.router)
    if pages:
        for route in session_pages.routes():
            app.router.routes.append(route)


def mount_from_context(app: Any, ctx: Any, *, pages: bool = True) -> RemoteTechnician:
    """Build Remote Technician for the portal context ``ctx``
    (:class:`ewsgate.portal.context.PortalContext`), mount it, and register it as a background
    service. Reads ``remote_session_seconds`` from the portal's flags, if given."""
    seconds = ctx.config.values.get("remote_session_seconds")
    try:
        session_config = SessionConfig(max_seconds=int(seconds)) if seconds else SessionConfig()
    except ValueError as exc:
        raise ConfigError(f"--remote-session-seconds: {exc}") from None
    rt = build_remote_technician(
        db=ctx.database, data_dir=Path(ctx.config.data_dir), public_url=ctx.config.public_url,
        hub=_ContextHub(ctx), auth=ctx.config.auth, clock=ctx.clock,
        session_config=session_config,
        ca_source=lambda: getattr(_control_server(ctx), "ca", None))
    rt.hub_source = lambda: _control_server(ctx)
    mount_remote_technician(app, rt, pages=pages)
    ctx.background.append(rt)
    return rt


def remote_technician_of(app: Any) -> RemoteTechnician:
    """The :class:`RemoteTechnician` mounted on ``app``."""
    rt: RemoteTechnician = app.state.ewsgate_rt
    return rt
