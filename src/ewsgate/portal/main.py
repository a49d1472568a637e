"""``ewsgate portal``: migrate the database, then serve the portal with uvicorn.

::

    run(values)                       # the resolved flags (cli.py)
      └─ PortalConfig.from_values     # validated once; ConfigError → exit 2 with the reason
      └─ uvloop event loop:
           upgrade(database_url)      # Alembic, idempotent
           app = create_app(config)
           ctx.background += background_services(ctx)   # gRPC control server, ...
           uvicorn (httptools) on --listen; prints "ewsgate portal: listening on URL"
           SIGINT/SIGTERM → graceful shutdown; background services stopped in reverse order

Everything runs in one event loop: the HTTP server and the background services (which the
app's lifespan starts after the database is migrated and stops on shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ewsgate.config import ConfigError
from ewsgate.portal.context import BackgroundService, PortalConfig, PortalContext

__all__ = ["BACKGROUND_FACTORIES", "background_services", "bind_socket", "run", "serve"]

log = logging.getLogger(__name__)

#: Factories of the services ``ewsgate portal`` runs beside the web server, each
#: ``(ctx) -> BackgroundService | None``; a part adds its own with one line here.
BACKGROUND_FACTORIES: list[Callable[[PortalContext], BackgroundService | None]] = [
    lambda ctx: __import__("ewsgate.portal.control.runtime",
                           fromlist=["control_service"]).control_service(ctx),
    lambda ctx: __import__("ewsgate.portal.control.routing",
                           fromlist=["routing_service"]).routing_service(ctx),
]


def background_services(ctx: PortalContext) -> list[BackgroundService]:
    """Instantiate :data:`BACKGROUND_FACTORIES` for this process (``None`` = not wanted)."""
    services = []
    for factory in BACKGROUND_FACTORIES:
        service = factory(ctx)
        if service is not None:
            services.append(service)
    return services


def bind_socket(config: PortalConfig) -> socket.socket:
    """The listening socket for ``--listen`` (port 0 picks a free port)."""
    host, port = config.listen.host, config.listen.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"--listen {config.listen}: cannot listen there ({exc.strerror}); "
                          "choose another HOST:PORT") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(config: PortalConfig, *, ready: Callable[[str], None] | None = None) -> None:
    """Migrate, build the app and serve until cancelled or signalled."""
    import uvicorn

    from ewsgate.fsmode import private_dir
    from ewsgate.portal.app import context_of, create_app
    from ewsgate.portal.store.db import upgrade
    from ewsgate.portal.store.keyring import KeyringError
    from ewsgate.portal.store.sealed import reseal_all

    sock = bind_socket(config)
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}"
    if not config.values.get("public_url"):  # --listen ...:0 → the port actually bound
        config = replace(config, public_url=url)
    private_dir(config.data_dir)
    await upgrade(config.database_url)
    app = create_app(config)
    ctx = context_of(app)
    try:
        resealed = await reseal_all(ctx.database.engine)
    except KeyringError as exc:
        raise ConfigError(f"{exc}. Every portal replica needs the same {config.data_dir}/keys "
                          "(copy it from the portal that sealed them, like the CA)") from None
    if resealed:
        log.info("sealed the SNMP secrets of %d stored rows with key %s", resealed,
                 ctx.database.keyring.current)
    ctx.background.extend(background_services(ctx))
    server = uvicorn.Server(uvicorn.Config(
        app, http="httptools", loop="none", lifespan="on", log_level="info",
        proxy_headers=True, forwarded_allow_ips="127.0.0.1", server_header=False))

    message = f"ewsgate portal: listening on {url} (public URL {config.public_url})"
    ctx.background.append(_Announcer(message, url, ready))
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()


class _Announcer:
    """The last background service: when it starts, everything else has started and the
    socket is already listening (connections wait in its backlog), so say so."""

    name = "announcer"

    def __init__(self, message: str, url: str, ready: Callable[[str], None] | None) -> None:
        self.message, self.url, self.ready = message, url, ready

    async def start(self) -> None:
        print(self.message, flush=True)
        if self.ready is not None:
            self.ready(self.url)

    async def stop(self) -> None:
        return None


def run(values: dict[str, Any]) -> int:
    """The ``ewsgate portal`` handler."""
    config = PortalConfig.from_values(values)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        import uvloop

        uvloop.run(serve(config))
    except ImportError:  # pragma: no cover - uvloop is a dependency of uvicorn[standard]
        asyncio.run(serve(config))
    return 0
