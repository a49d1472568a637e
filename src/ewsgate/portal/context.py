"""The portal process's configuration and shared runtime objects.

:class:`PortalConfig` is the frozen, validated configuration of ``ewsgate portal`` (built once
from the command line / environment / config file by :meth:`PortalConfig.from_values`).
:class:`PortalContext` holds what every part of the portal process shares at run time — the
database, the clock, the login limiter, the auth settings — and the list of
:class:`BackgroundService` objects that the application's lifespan starts (in order) and stops
(in reverse order): the gRPC control server, Remote Technician's sweeper and so on register
themselves there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from ewsgate.config import ConfigError, HostPort, parse_duration, parse_host_port
from ewsgate.portal.auth import AuthSettings, LoginLimiter
from ewsgate.portal.store.db import Database, DatabaseUrlError, default_database_url
from ewsgate.portal.store.db import parse_database_url as _parse_database_url
from ewsgate.portal.store.types import Clock, utc_now

__all__ = ["BackgroundService", "PortalConfig", "PortalContext"]


@runtime_checkable
class BackgroundService(Protocol):
    """Something that runs beside the web server in the same event loop."""

    name: str

    async def start(self) -> None:
        """Begin serving; return once started (spawn tasks for long work)."""

    async def stop(self) -> None:
        """Stop serving and release resources; must be safe to call once after start."""


@dataclass(frozen=True, slots=True)
class PortalConfig:
    """Everything ``ewsgate portal`` is configured with; validated once at start-up."""

    listen: HostPort = field(default_factory=lambda: parse_host_port("127.0.0.1:8000"))
    grpc_listen: HostPort = field(default_factory=lambda: parse_host_port("127.0.0.1:8001"))
    data_dir: Path = Path("./data/portal")
    #: SQLAlchemy URL; ``None`` in :meth:`from_values` means SQLite in ``data_dir``
    database_url: str = "sqlite+aiosqlite:///./data/portal/portal.sqlite3"
    #: the portal's URL as browsers and relays reach it, without a trailing slash
    public_url: str = "http://127.0.0.1:8000"
    auth: AuthSettings = field(default_factory=AuthSettings)
    #: every resolved flag value of ``ewsgate portal`` (for parts with flags of their own,
    #: e.g. ``control_server_from_values(config.values, ...)``)
    values: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> PortalConfig:
        """Build from the resolved ``ewsgate portal`` flag values (see ``portal/options.py``)."""
        data_dir = Path(values.get("data_dir") or "./data/portal")
        listen = values.get("listen") or parse_host_port("127.0.0.1:8000")
        database_url = values.get("database_url") or default_database_url(data_dir)
        try:
            _parse_database_url(database_url)
        except DatabaseUrlError as exc:
            raise ConfigError(f"--database-url: {exc}") from None
        public_url = values.get("public_url") or f"http://{listen}"
        secure = public_url.startswith("https://")
        auth = AuthSettings(cookie_secure=secure)
        if values.get("session_lifetime") is not None:
            auth = replace(auth, session_lifetime=_duration("session-lifetime",
                                                            values["session_lifetime"]))
        if values.get("session_idle_timeout") is not None:
            auth = replace(auth, idle_timeout=_duration("session-idle-timeout",
                                                        values["session_idle_timeout"]))
        grpc_listen = values.get("grpc_listen") or parse_host_port("127.0.0.1:8001")
        resolved = {**values, "listen": listen, "grpc_listen": grpc_listen, "data_dir": data_dir,
                    "database_url": database_url}
        return cls(listen=listen, grpc_listen=grpc_listen, data_dir=data_dir,
                   database_url=database_url, public_url=public_url.rstrip("/"), auth=auth,
                   values=MappingProxyType(resolved))


def _duration(flag: str, value: Any) -> timedelta:
    """A flag's duration: seconds as a number, or text such as ``12h`` (the defaults)."""
    try:
        seconds = parse_duration(value) if isinstance(value, str) else float(value)
    except ValueError as exc:
        raise ConfigError(f"--{flag}: {exc}") from None
    if seconds <= 0:
        raise ConfigError(f"--{flag} must be longer than zero")
    return timedelta(seconds=seconds)


@dataclass
class PortalContext:
    """Shared runtime objects of one portal process (or one test)."""

    config: PortalConfig
    database: Database
    clock: Clock = utc_now
    #: default: failures in the database, shared by every replica
    limiter: LoginLimiter | None = None
    #: started in order by the app's lifespan, stopped in reverse
    background: list[BackgroundService] = field(default_factory=list)
    #: set by ``create_app`` when it made ``database`` itself (then it disposes it too)
    owns_database: bool = False

    def __post_init__(self) -> None:
        if self.limiter is None:
            from ewsgate.portal.login_limits import SharedLoginLimiter

            self.limiter = SharedLoginLimiter(self.database, self.config.auth, clock=self.clock)

    @property
    def login_limiter(self) -> LoginLimiter:
        assert self.limiter is not None
        return self.limiter
