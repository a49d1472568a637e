"""Start and stop one simulated printer: its EWS listeners (HTTP, HTTPS) and its SNMP agent.

:func:`start_device` is the programmatic entry point the CLI, the demo, the tests and the
benchmarks share::

    device = await start_device("brother", http=HostPort("127.0.0.1", 0),
                                https=HostPort("127.0.0.1", 0), snmp=HostPort("127.0.0.1", 0))
    device.http, device.https, device.snmp      # the ports actually bound
    await device.close()

The listeners are bound first (port 0 becomes a real port), then the profile is built with a
:class:`~ewsgate.devicesim.state.DeviceContext` that knows those ports, so every absolute URL it
writes names an address that really answers. The HTTPS listener uses the profile's TLS flavour
(modern, or legacy TLS 1.0/1.1) with a certificate made at start-up, or the one given.
The SNMP agent (``ewsgate.devicesim.snmp_agent``) serves the same serial and MAC.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ewsgate.config import HostPort
from ewsgate.devicesim.ews_server import HttpListener, serve_http
from ewsgate.devicesim.profiles import PROFILES, profile_class
from ewsgate.devicesim.profiles.base import Profile
from ewsgate.devicesim.state import (
    Clock,
    DeviceConfig,
    DeviceContext,
    DeviceState,
    SystemClock,
    normalise_mac,
)
from ewsgate.devicesim.tls import (
    CertificatePair,
    legacy_server_context,
    modern_server_context,
    self_signed_certificate,
)
from ewsgate.devicesim.web import Request, Response, WebSocketResponse

__all__ = ["DeviceStartError", "RunningDevice", "load_certificate", "start_device"]

log = logging.getLogger("ewsgate.devicesim")


class DeviceStartError(ValueError):
    """The device cannot start as asked; ``code`` is stable, the message says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class RunningDevice:
    """A started device: bound addresses, its context (state, clock) and ``close()``."""

    profile: Profile
    context: DeviceContext
    http: HostPort | None
    https: HostPort | None
    snmp: HostPort | None
    certificate: CertificatePair | None
    _servers: list[HttpListener] = field(default_factory=list, repr=False)
    _snmp: Any = field(default=None, repr=False)

    @property
    def config(self) -> DeviceConfig:
        return self.context.config

    def url(self, scheme: str = "http", path: str = "/") -> str:
        """A URL of this device as a client on this machine reaches it (bound address)."""
        bound = self.http if scheme == "http" else self.https
        if bound is None:
            raise ValueError(f"the device has no {scheme} listener")
        host = f"[{bound.host}]" if ":" in bound.host else bound.host
        return f"{scheme}://{host}:{bound.port}{path}"

    async def close(self) -> None:
        for server in self._servers:
            await server.close()
        self._servers.clear()
        if self._snmp is not None:
            self._snmp.close()
            self._snmp = None

    async def __aenter__(self) -> RunningDevice:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _default_hostname(prefix: str, mac: str) -> str:
    return prefix + mac.replace(":", "")[-6:].upper()


async def start_device(
    profile: str,
    *,
    http: HostPort | None = None,
    https: HostPort | None = None,
    snmp: HostPort | None = None,
    mac: str | None = None,
    serial: str | None = None,
    advertised_host: str | None = None,
    hostname: str | None = None,
    slow_seconds: float = 3.0,
    large_log_bytes: int = 200 * 1024 * 1024,
    admin_idle_seconds: float = 600.0,
    certificate: CertificatePair | None = None,
    snmp_options: dict[str, Any] | None = None,
    clock: Clock | None = None,
) -> RunningDevice:
    """Start the simulated ``profile`` on the given addresses (port 0: any free port)."""
    if profile not in PROFILES:
        raise DeviceStartError("devicesim.unknown_profile",
                               f"unknown profile {profile!r}; choose one of "
                               f"{', '.join(PROFILES)} (see docs/devicesim.md)")
    if http is None and https is None:
        raise DeviceStartError("devicesim.no_listener",
                               "give --http HOST:PORT and/or --https HOST:PORT")
    cls = profile_class(profile)
    info = cls.info
    try:
        mac = normalise_mac(mac or info.mac)
    except ValueError as exc:
        raise DeviceStartError("devicesim.bad_mac", f"--mac: {exc}") from None
    listen_host = (http or https).host  # type: ignore[union-attr]
    if advertised_host is None:
        advertised_host = listen_host
        if advertised_host in ("", "0.0.0.0", "::"):
            advertised_host = "127.0.0.1"
            log.warning("listening on a wildcard address: pass --advertised-host with the IP "
                        "clients use; absolute URLs will name 127.0.0.1")
    try:
        config = DeviceConfig(profile=profile, serial=serial or info.serial, mac=mac,
                              advertised_host=advertised_host,
                              hostname=hostname or _default_hostname(info.hostname_prefix, mac),
                              slow_seconds=slow_seconds, large_log_bytes=large_log_bytes,
                              admin_idle_seconds=admin_idle_seconds)
    except ValueError as exc:
        raise DeviceStartError("devicesim.bad_config", str(exc)) from None
    clock = clock or SystemClock()
    context = DeviceContext(config, clock, DeviceState(), boot_time=clock.monotonic())
    holder: list[Profile] = []

    async def app(request: Request) -> Response | WebSocketResponse:
        return await holder[0].handle(request)

    device = RunningDevice(profile=None, context=context, http=None,  # type: ignore[arg-type]
                           https=None, snmp=None, certificate=None)
    try:
        if http is not None:
            server = await _listen(app, http, "http", None)
            device._servers.append(server)
            device.http = HostPort(http.host, server.port)
            context.http_port = device.http.port
        if https is not None:
            if certificate is None:
                certificate = await asyncio.to_thread(
                    self_signed_certificate, advertised_host, organisation=info.make,
                    model=info.model)
            tls = (legacy_server_context if info.tls == "legacy"
                   else modern_server_context)(certificate)
            server = await _listen(app, https, "https", tls, alerts=info.tls == "legacy")
            device._servers.append(server)
            device.https = HostPort(https.host, server.port)
            device.certificate = certificate
            context.https_port = device.https.port
        holder.append(cls(context))
        device.profile = holder[0]
        if snmp is not None:
            device._snmp = await _start_snmp(info.snmp_vendor, info.model, config, snmp,
                                             snmp_options or {})
            device.snmp = device._snmp.address
    except BaseException:
        await device.close()
        raise
    return device


async def _listen(app: Any, where: HostPort, scheme: str, tls: Any, *,
                  alerts: bool = False) -> HttpListener:
    try:
        return await serve_http(app, where.host, where.port, scheme=scheme, ssl_context=tls,
                                handshake_alerts=alerts)
    except OSError as exc:
        raise DeviceStartError("devicesim.bind_failed",
                               f"cannot listen for {scheme.upper()} on {where}: {exc.strerror}; "
                               f"choose another --{scheme} address or port 0") from None


async def _start_snmp(vendor: str, model: str, config: DeviceConfig, where: HostPort,
                      options: dict[str, Any]) -> Any:
    from ewsgate.devicesim.mib import VENDORS
    from ewsgate.devicesim.snmp_agent import SnmpAgentConfig, serve_snmp

    try:
        ipaddress.ip_address(config.advertised_host)
        device_ip: str | None = config.advertised_host
    except ValueError:
        device_ip = None
    extra: dict[str, Any] = {}
    if vendor not in VENDORS:
        # no private MIB for this vendor: answer through the standard Printer-MIB only
        log.info("no SNMP vendor table for %s; serving Printer-MIB identity only", vendor)
        vendor, extra = "xerox", {"vendor_serial": False}
    snmp_config = SnmpAgentConfig(listen=where, profile=vendor, mac=config.mac,
                                  serial=config.serial, device_ip=device_ip, model=model,
                                  sys_name=config.hostname, **extra, **options)
    return await serve_snmp(snmp_config)


def load_certificate(cert: Path, key: Path) -> CertificatePair:
    """Read a PEM certificate and key given with --tls-cert / --tls-key."""
    try:
        return CertificatePair(cert.read_bytes(), key.read_bytes())
    except OSError as exc:
        raise DeviceStartError("devicesim.tls_files",
                               f"cannot read {exc.filename}: {exc.strerror}") from None

