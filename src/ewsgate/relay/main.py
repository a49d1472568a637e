"""``ewsgate relay``: the Remote Technician server process.

Theory of operation: one asyncio process with two TLS listeners and shared state::

    agents ──TLS 1.3 + client cert──▶ TunnelServer ──register──▶ TunnelRegistry
                                                                     ▲ lookup / open_stream
    browsers ──HTTPS (wildcard *.DOMAIN)──▶ RelayProxy (per Host s-<id>.DOMAIN) ┘
                                              │ BrowserAuth (OAuth 2.1 + PKCE to the portal)
                                              └▶ AccessLog spool ──batches──▶ portal
    portal ──SSE /api/v1/relay/events──▶ RevocationFeed ──close_session──▶ TunnelRegistry
                                              (Revocations: admission, sign-in refusal)

The relay holds no database credentials: it knows the portal's URL, its own relay id and secret
(what ``ewsgate admin create-relay`` printed, from flags or ``DATA_DIR/relay.json``), the portal's
published keys (JWKS, for tunnel tickets and access tokens alike) and its certificates.
A random key for the session cookies is created once in ``DATA_DIR/cookie.key``.

The process runs on uvloop when it is installed (it is, with uvicorn[standard]): the same
asyncio API, with less CPU per TLS record and per socket call.

The relay heartbeats to the portal (:mod:`ewsgate.relay.heartbeat`) so sessions are placed only
on live relays. SIGTERM drains it: the heartbeat says ``draining`` (no new sessions come), live
sessions run to their end or to ``--drain-timeout`` (default 10 min), then end with the clear
page (served for :data:`DRAIN_LINGER` seconds more), and the relay says ``stopped``.
``--drain-timeout 0`` turns draining off: SIGTERM then stops at once, as for a restart, and
the sessions wait for the relay to come back. SIGINT (or a second SIGTERM) stops it at once,
gracefully: listeners close, tunnels get GOAWAY, and the access log tries for a few seconds to
ship what is left (whatever is not shipped stays in the spool and is shipped by the next start).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ewsgate.config import ConfigError, HostPort
from ewsgate.fsmode import private_dir
from ewsgate.relay.access_log import AccessLog, PortalLogShipper
from ewsgate.relay.browser_auth import BrowserAuth, OAuthClientConfig
from ewsgate.relay.clock import SystemClock
from ewsgate.relay.heartbeat import RelayHeartbeat, drain
from ewsgate.relay.http_proxy import MAX_SESSION_SECONDS, ProxyConfig, RelayProxy
from ewsgate.relay.portal_http import portal_client
from ewsgate.relay.portal_sessions import PortalSessions
from ewsgate.relay.portal_url import require_secure_portal_url
from ewsgate.relay.registry import TunnelRegistry
from ewsgate.relay.revocation import DEFAULT_UNREACHABLE_AFTER, Revocations
from ewsgate.relay.revocation_feed import RevocationFeed
from ewsgate.relay.tickets import JwksKeySource, TicketVerifier
from ewsgate.relay.tunnel_server import TunnelServer, TunnelServerConfig

__all__ = ["RelaySettings", "run", "serve"]

log = logging.getLogger("ewsgate.relay")
#: the portal sends a heartbeat every 5 s: a shorter bound would refuse work between two
MIN_UNREACHABLE_AFTER = 10.0
#: after a drain ended sessions at its deadline, browsers get the clear page this long
DRAIN_LINGER = 3.0


@dataclass(frozen=True)
class RelaySettings:
    """Everything ``ewsgate relay`` runs with, resolved and checked once."""

    listen: HostPort
    tunnel_listen: HostPort
    domain: str
    portal_url: str
    data_dir: Path
    relay_id: str
    relay_secret: str
    tls_cert: Path
    tls_key: Path
    tunnel_cert: Path
    tunnel_key: Path
    client_ca: Path
    portal_ca: Path | None
    public_port: int
    max_session: float
    header_timeout: float
    body_timeout: float
    portal_unreachable_after: float = DEFAULT_UNREACHABLE_AFTER
    response_timeout: float = 60.0
    log_fsync_interval: float = 0.2
    drain_timeout: float = 600.0

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> RelaySettings:
        data_dir: Path = values["data_dir"]
        listen: HostPort = values["listen"]
        relay_id, relay_secret = values.get("relay_id"), values.get("relay_secret")
        creds_file = data_dir / "relay.json"
        if (not relay_id or not relay_secret) and creds_file.exists():
            try:
                creds = json.loads(creds_file.read_text("utf-8"))
            except ValueError as exc:
                raise ConfigError(f"{creds_file} is not valid JSON: {exc}") from None
            relay_id = relay_id or str(creds.get("relay_id") or "")
            relay_secret = relay_secret or str(creds.get("relay_secret") or "")
        if not relay_id or not relay_secret:
            raise ConfigError(
                "the relay's credentials are missing: pass --relay-id and --relay-secret (or "
                "EWSGATE_RELAY_ID / EWSGATE_RELAY_SECRET), or save what `ewsgate admin "
                f"create-relay` printed as {creds_file} "
                '({"relay_id": "...", "relay_secret": "..."})')
        max_session = float(values.get("max_session") or MAX_SESSION_SECONDS)
        if not 0 < max_session <= MAX_SESSION_SECONDS:
            raise ConfigError(f"--max-session {max_session:g}s is above the 30-minute ceiling; "
                              "choose 30m or less")

        unreachable = float(values.get("portal_unreachable_after") or DEFAULT_UNREACHABLE_AFTER)
        if unreachable < MIN_UNREACHABLE_AFTER:
            raise ConfigError(f"--portal-unreachable-after {unreachable:g}s is shorter than the "
                              f"portal's heartbeat allows; choose {MIN_UNREACHABLE_AFTER:g}s or "
                              "more (the default is 30s)")

        def path(key: str, default: str) -> Path:
            chosen: Path = values.get(key) or data_dir / default
            return chosen

        default_ca = data_dir / "ca.pem"
        settings = cls(
            listen=listen, tunnel_listen=values["tunnel_listen"],
            domain=str(values["domain"]).lower().strip("."),
            portal_url=require_secure_portal_url(values["portal_url"]),
            data_dir=data_dir, relay_id=str(relay_id), relay_secret=str(relay_secret),
            tls_cert=path("tls_cert", "browser-cert.pem"), tls_key=path("tls_key",
                                                                        "browser-key.pem"),
            tunnel_cert=path("tunnel_cert", "tunnel-cert.pem"),
            tunnel_key=path("tunnel_key", "tunnel-key.pem"),
            client_ca=path("client_ca", "ca.pem"),
            portal_ca=values.get("portal_ca") or (default_ca if default_ca.exists() else None),
            public_port=int(values.get("public_port") or listen.port),
            max_session=max_session,
            header_timeout=float(values.get("header_timeout") or 10.0),
            body_timeout=float(values.get("body_timeout") or 300.0),
            portal_unreachable_after=unreachable,
            response_timeout=float(values.get("response_timeout") or 60.0),
            log_fsync_interval=float(values["log_fsync_interval"]) if values.get(
                "log_fsync_interval") is not None else 0.2,
            drain_timeout=float(values["drain_timeout"]) if values.get(
                "drain_timeout") is not None else 600.0,
        )
        if settings.drain_timeout < 0:
            raise ConfigError("--drain-timeout must be 0 or more (e.g. 10m)")
        if settings.response_timeout <= 0:
            raise ConfigError("--response-timeout must be positive (e.g. 60s)")
        for flag, file in (("--tls-cert", settings.tls_cert), ("--tls-key", settings.tls_key),
                           ("--tunnel-cert", settings.tunnel_cert),
                           ("--tunnel-key", settings.tunnel_key),
                           ("--client-ca", settings.client_ca)):
            if not file.is_file():
                raise ConfigError(f"{flag}: {file} does not exist; pass {flag} FILE or put the "
                                  "file there (the portal's CA issues the relay's certificates)")
        return settings


def browser_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Browser-facing TLS: 1.2+, HTTP/1.1 only (ALPN), the wildcard certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


def cookie_key(data_dir: Path) -> bytes:
    """The session-cookie HMAC key: 32 random bytes made once, kept 0600 in the data dir."""
    path = data_dir / "cookie.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
            os.fsync(fd)
        finally:
            os.close(fd)
    key = path.read_bytes()
    if len(key) < 32:
        raise ConfigError(f"{path} is shorter than 32 bytes; delete it to make a new one")
    return key


async def serve(settings: RelaySettings, stop: asyncio.Event,
                draining: asyncio.Event | None = None) -> None:
    """Run the relay until ``stop`` is set, or drain it when ``draining`` is set."""
    private_dir(settings.data_dir)
    clock = SystemClock()
    verify: Any = str(settings.portal_ca) if settings.portal_ca else True
    keys = JwksKeySource(settings.portal_url, verify=verify)
    registry = TunnelRegistry(clock)
    revocations = Revocations(unreachable_after=settings.portal_unreachable_after)
    tunnels = TunnelServer(
        TunnelServerConfig(host=settings.tunnel_listen.host, port=settings.tunnel_listen.port,
                           cert_file=settings.tunnel_cert, key_file=settings.tunnel_key,
                           client_ca_file=settings.client_ca),
        TicketVerifier(relay_id=settings.relay_id, portal_url=settings.portal_url, keys=keys),
        registry, revocations=revocations)
    proxy_config = ProxyConfig(domain=settings.domain, portal_url=settings.portal_url,
                               public_port=settings.public_port,
                               header_timeout=settings.header_timeout,
                               body_timeout=settings.body_timeout,
                               response_timeout=settings.response_timeout,
                               max_session_seconds=settings.max_session)
    http = portal_client(verify=verify, timeout=10.0)
    sessions = PortalSessions(settings.portal_url, settings.relay_id, settings.relay_secret,
                              http, clock)
    auth = BrowserAuth(
        OAuthClientConfig(relay_id=settings.relay_id, relay_secret=settings.relay_secret,
                          portal_url=settings.portal_url,
                          cookie_key=cookie_key(settings.data_dir)),
        session_host=proxy_config.session_host, clock=clock, keys=keys, http=http,
        sessions=sessions)
    shipper = PortalLogShipper(settings.portal_url, settings.relay_id, settings.relay_secret,
                               verify=verify)
    access_log = AccessLog(settings.data_dir / "access-log", shipper,
                           fsync_interval=settings.log_fsync_interval)
    proxy = RelayProxy(proxy_config, registry, auth, access_log, clock, sessions)
    proxy.sign_in_refusal = lambda: revocations.unreachable_reason(clock.now())
    feed = RevocationFeed(settings.portal_url, settings.relay_id, settings.relay_secret, http,
                          registry, revocations, clock)
    heartbeat = RelayHeartbeat(settings.portal_url, settings.relay_id, settings.relay_secret,
                               http, clock)
    beating = asyncio.create_task(heartbeat.run())
    following = asyncio.create_task(feed.run())
    shipping = asyncio.create_task(access_log.run())
    tunnel_host, tunnel_port = await tunnels.start()
    browser_tls = browser_tls_context(settings.tls_cert, settings.tls_key)
    proxy.server_names.install(browser_tls)
    server = await asyncio.start_server(
        proxy.handle, settings.listen.host, settings.listen.port,
        ssl=browser_tls,
        ssl_handshake_timeout=settings.header_timeout, limit=64 * 1024)
    bound = server.sockets[0].getsockname()
    log.info("relay %s: browsers on https://s-<id>.%s:%s (listening on %s:%s), agents on %s:%s",
             settings.relay_id, settings.domain, settings.public_port, bound[0], bound[1],
             tunnel_host, tunnel_port)
    print(f"ewsgate relay {settings.relay_id}: sessions at https://s-<id>.{settings.domain}:"
          f"{settings.public_port}/ ; tunnels on {tunnel_host}:{tunnel_port}", flush=True)
    try:
        await _wait_for_stop_or_drain(settings, stop, draining, heartbeat, registry, clock)
    finally:
        server.close()
        beating.cancel()
        with contextlib.suppress(BaseException):
            await beating
        following.cancel()
        with contextlib.suppress(BaseException):
            await following
        await tunnels.close()
        shipping.cancel()
        with contextlib.suppress(BaseException):
            await shipping
        with contextlib.suppress(Exception):
            await access_log.drain(within=3.0)
        access_log.close()
        await shipper.aclose()
        await http.aclose()


async def _wait_for_stop_or_drain(settings: RelaySettings, stop: asyncio.Event,
                                  draining: asyncio.Event | None, heartbeat: RelayHeartbeat,
                                  registry: TunnelRegistry, clock: SystemClock) -> None:
    """Until ``stop``; or, once ``draining`` is set, drain (a ``stop`` cuts it short)."""
    waits = [asyncio.ensure_future(stop.wait())]
    if draining is not None:
        waits.append(asyncio.ensure_future(draining.wait()))
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    if stop.is_set() or draining is None:
        return
    deadline = clock.now() + settings.drain_timeout
    log.info("draining: no new sessions; %d live session(s) run to their end or %.0f s",
             len(registry.sessions), settings.drain_timeout)
    heartbeat.set_draining(deadline)
    draining_task = asyncio.ensure_future(drain(registry, clock, deadline))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((draining_task, stopping), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not draining_task.done():
            draining_task.cancel()
            with contextlib.suppress(BaseException):
                await draining_task
    await heartbeat.stopped()
    log.info("drained: the portal was told this relay stopped")
    ended = (draining_task.result() if draining_task.done() and not draining_task.cancelled()
             and draining_task.exception() is None else 0)
    if ended and not stop.is_set():
        # a tab that reloads in the next seconds gets the clear page, not a refused connection
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_LINGER):
                await stop.wait()


def run(values: dict[str, Any]) -> int:
    """Entry point of ``ewsgate relay`` (values resolved from flags, environment and config)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    settings = RelaySettings.from_values(values)

    async def main() -> None:
        stop = asyncio.Event()
        draining = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_sigterm() -> None:
            if settings.drain_timeout == 0 or draining.is_set():
                stop.set()  # no drain configured, or a second SIGTERM: stop now
            else:
                draining.set()

        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        await serve(settings, stop, draining)

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(main())
    return 0


def _loop_factory() -> Any:
    """uvloop's event loop when installed (its TLS and socket paths cost less CPU per
    request than the standard library's), else the standard one."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return None
    return uvloop.new_event_loop
