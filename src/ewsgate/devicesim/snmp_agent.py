"""The simulated printer's SNMP agent: a real SNMP command responder on UDP (pysnmp).

Theory of operation::

    UDP datagram ─► pysnmp engine (v2c community / v3 USM auth+priv, VACM read view)
                     └─► GET / GETNEXT / GETBULK responder ─► _TableController ─► MibTable

pysnmp's agent side does the protocol: BER, the community check, the USM (engine-id discovery,
HMAC-SHA digests, AES privacy, reports), VACM and the PDU handling. What pysnmp does not offer
is a MIB served from plain data without compiling MIB modules, so :class:`_TableController`
(written here, ~40 lines) answers GET/GETNEXT from the pure :class:`~.mib.MibTable` built by
:func:`~.mib.build_printer_mib`, asking pysnmp's access control for each variable.

Why pysnmp and not snmpsim: pysnmp is already the agent's SNMP library, runs in-process on the
caller's asyncio loop (the simulator's web side and tests share one loop, ports may be 0), and
is configured in code. snmpsim would be a second process per device, needs ``pysmi`` and
``cryptography`` installed beside it, data files on disk, and a writable cache directory.

A wrong community or an unknown v3 user is dropped without an answer, as real agents do; a
wrong v3 key gets a USM report (wrongDigest), which the checker turns into "unknown".

Use :func:`serve_snmp` (a coroutine); it returns an :class:`SnmpAgentHandle` whose ``address``
holds the bound port (useful with port 0) and whose ``close()`` stops it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ewsgate.config import HostPort, parse_host_port
from ewsgate.devicesim.mib import (
    Gauge,
    IpAddress,
    MibScalar,
    MibTable,
    SerialEncoding,
    TimeTicks,
    VendorProfile,
    build_printer_mib,
    parse_mac,
    vendor_for_profile,
)

__all__ = [
    "AUTH_PROTOCOLS",
    "PRIV_PROTOCOLS",
    "SnmpAgentConfig",
    "SnmpAgentError",
    "SnmpAgentHandle",
    "serve_snmp",
]

#: v3 authentication protocol names accepted here and by the agent's checker
AUTH_PROTOCOLS = ("MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512")
#: v3 privacy protocol names; AES192/AES256 are the Blumenthal variants net-snmp speaks
PRIV_PROTOCOLS = ("DES", "AES", "AES192", "AES256")


class SnmpAgentError(ValueError):
    """The simulator's SNMP settings are wrong; ``code`` is stable, the message says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class SnmpAgentConfig:
    """Everything the simulated SNMP agent serves. Validated once, in the constructor."""

    listen: HostPort
    profile: str = "hp"
    mac: str = "a0:d3:c1:4a:2b:3c"
    serial: str = "CNBRM5K0QZ"
    #: the IP the device believes it has (ipAddrTable); default: the listen address
    device_ip: str | None = None
    community: str = "public"
    v3_user: str | None = None
    v3_auth_key: str | None = None
    v3_priv_key: str | None = None
    v3_auth_protocol: str = "SHA"
    v3_priv_protocol: str = "AES"
    #: the Ethernet port's ifIndex; default: the vendor's (never 1, the loopback)
    if_index: int | None = None
    ip_addr_table: bool = True
    printer_mib_serial: bool = True
    vendor_serial: bool = True
    serial_encoding: SerialEncoding | None = None
    model: str | None = None
    sys_name: str | None = None

    def __post_init__(self) -> None:
        self.vendor  # noqa: B018 - validates the profile name
        try:
            parse_mac(self.mac)
        except ValueError as exc:
            raise SnmpAgentError("devicesim.bad_mac", f"--mac: {exc}") from None
        if not self.serial or not self.serial.isascii() or not self.serial.isprintable():
            raise SnmpAgentError("devicesim.bad_serial",
                                 f"--serial {self.serial!r}: use printable ASCII, e.g. CNBRM5K0QZ")
        try:
            ipaddress.ip_address(self.effective_device_ip)
        except ValueError:
            raise SnmpAgentError("devicesim.bad_device_ip",
                                 f"device IP {self.effective_device_ip!r} is not an IP address; "
                                 "give --snmp an IP literal or set the device IP") from None
        if not self.community and not self.v3_user:
            raise SnmpAgentError("devicesim.no_access",
                                 "set an SNMP community or a v3 user, or the agent answers no one")
        if self.v3_user:
            if self.v3_auth_protocol.upper() not in AUTH_PROTOCOLS:
                raise SnmpAgentError("devicesim.bad_v3_auth",
                                     f"v3 auth protocol {self.v3_auth_protocol!r}: use one of "
                                     f"{', '.join(AUTH_PROTOCOLS)}")
            if self.v3_priv_protocol.upper() not in PRIV_PROTOCOLS:
                raise SnmpAgentError("devicesim.bad_v3_priv",
                                     f"v3 privacy protocol {self.v3_priv_protocol!r}: use one of "
                                     f"{', '.join(PRIV_PROTOCOLS)}")
            for label, key in (("auth", self.v3_auth_key), ("priv", self.v3_priv_key)):
                if key is not None and len(key) < 8:
                    raise SnmpAgentError("devicesim.short_v3_key",
                                         f"the v3 {label} key must be at least 8 characters")
            if self.v3_priv_key and not self.v3_auth_key:
                raise SnmpAgentError("devicesim.priv_without_auth",
                                     "a v3 privacy key needs an auth key too (authPriv)")

    @property
    def vendor(self) -> VendorProfile:
        try:
            return vendor_for_profile(self.profile)
        except ValueError as exc:
            raise SnmpAgentError("devicesim.unknown_vendor", f"--profile: {exc}") from None

    @property
    def effective_device_ip(self) -> str:
        if self.device_ip:
            return self.device_ip
        host = self.listen.host
        if host in ("", "0.0.0.0", "::"):
            return "127.0.0.1"
        return host

    @classmethod
    def from_options(cls, values: Mapping[str, Any]) -> SnmpAgentConfig:
        """Build from ``ewsgate devicesim`` resolved flags (``snmp``, ``profile``, ``mac``,
        ``serial``, ``snmp_community``, ``snmp_v3_user``, ``snmp_v3_auth_key``, …)."""
        listen = values.get("snmp")
        if isinstance(listen, str):
            listen = parse_host_port(listen)
        if not isinstance(listen, HostPort):
            raise SnmpAgentError("devicesim.no_snmp_listen", "--snmp HOST:PORT is required")
        given = {
            "profile": values.get("profile"),
            "mac": values.get("mac"),
            "serial": values.get("serial"),
            "device_ip": values.get("snmp_device_ip"),
            "community": values.get("snmp_community"),
            "v3_user": values.get("snmp_v3_user"),
            "v3_auth_key": values.get("snmp_v3_auth_key"),
            "v3_priv_key": values.get("snmp_v3_priv_key"),
            "v3_auth_protocol": values.get("snmp_v3_auth_protocol"),
            "v3_priv_protocol": values.get("snmp_v3_priv_protocol"),
            "if_index": values.get("snmp_if_index"),
        }
        return cls(listen=listen, **{key: value for key, value in given.items()
                                     if value is not None})


class _TableController:
    """Answers GET/GETNEXT from a :class:`MibTable`, with pysnmp's VACM check per variable."""

    def __init__(self, table: MibTable, to_wire: Callable[[MibScalar], Any],
                 no_such_instance: Any, end_of_mib_view: Any, object_name: Any) -> None:
        self._table = table
        self._to_wire = to_wire
        self._no_such_instance = no_such_instance
        self._end_of_mib_view = end_of_mib_view
        self._object_name = object_name

    def _allowed(self, name: Any, value: Any, context: dict[str, Any]) -> bool:
        check = context.get("acFun")
        # verify_access returns True when the variable is outside the view, raises when denied
        return not (check and check("read", (name, value), **context))

    def read_variables(self, *var_binds: Any, **context: Any) -> list[tuple[Any, Any]]:
        out = []
        for name, _ in var_binds:
            value = self._table.get(tuple(name))
            wire = self._no_such_instance if value is None else self._to_wire(value)
            if value is not None and not self._allowed(name, wire, context):
                wire = self._no_such_instance
            out.append((name, wire))
        return out

    def read_next_variables(self, *var_binds: Any, **context: Any) -> list[tuple[Any, Any]]:
        out = []
        for name, _ in var_binds:
            cursor: tuple[int, ...] = tuple(name)
            while True:
                found = self._table.next(cursor)
                if found is None:
                    out.append((name, self._end_of_mib_view))
                    break
                cursor, value = found
                wire_name, wire = self._object_name(cursor), self._to_wire(value)
                if self._allowed(wire_name, wire, context):
                    out.append((wire_name, wire))
                    break
        return out

    def write_variables(self, *var_binds: Any, **context: Any) -> list[tuple[Any, Any]]:
        from pysnmp.smi import error as smi_error

        raise smi_error.NotWritableError(idx=0)


def _to_wire(value: MibScalar) -> Any:
    from pysnmp.proto import rfc1902

    if isinstance(value, bytes):
        return rfc1902.OctetString(value)
    if isinstance(value, bool):
        return rfc1902.Integer32(int(value))
    if isinstance(value, int):
        return rfc1902.Integer32(value)
    if isinstance(value, Gauge):
        return rfc1902.Gauge32(value.value)
    if isinstance(value, TimeTicks):
        return rfc1902.TimeTicks(value.value)
    if isinstance(value, IpAddress):
        return rfc1902.IpAddress(value.packed)
    return rfc1902.ObjectName(value)


class SnmpAgentHandle:
    """A running simulated SNMP agent. ``address`` is where it listens (the real port)."""

    def __init__(self, engine: Any, address: HostPort, config: SnmpAgentConfig,
                 table: MibTable) -> None:
        self._engine = engine
        self.address = address
        self.config = config
        self.table = table
        self._closed = False

    @property
    def engine_id(self) -> bytes:
        """The agent's snmpEngineID (what a v3 manager discovers)."""
        return bytes(self._engine.snmpEngineID)

    def close(self) -> None:
        """Stop answering. Safe to call twice. asyncio releases the socket on the next loop
        iteration; ``await wait_closed()`` when the port must be free at once."""
        if self._closed:
            return
        self._closed = True
        self._engine.transport_dispatcher.close_dispatcher()

    async def wait_closed(self) -> None:
        """Wait until the UDP socket is released (after :meth:`close`)."""
        for _ in range(3):  # transport.close() → call_soon(connection_lost) → socket closed
            await asyncio.sleep(0)

    async def __aenter__(self) -> SnmpAgentHandle:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()


async def serve_snmp(config: SnmpAgentConfig, *,
                     clock: Callable[[], float] = time.monotonic) -> SnmpAgentHandle:
    """Start the simulated printer's SNMP agent on ``config.listen`` (UDP; port 0 picks one).

    Returns once the socket is bound and answering. ``clock`` drives sysUpTime.
    """
    from pysnmp.carrier.asyncio.dgram import udp, udp6
    from pysnmp.entity import config as snmp_config
    from pysnmp.entity import engine as snmp_engine
    from pysnmp.entity.rfc3413 import cmdrsp
    from pysnmp.entity.rfc3413 import context as snmp_context
    from pysnmp.proto import rfc1902, rfc1905

    started = clock()
    table = build_printer_mib(
        config.vendor,
        mac=parse_mac(config.mac),
        serial=config.serial,
        device_ip=config.effective_device_ip,
        if_index=config.if_index,
        sys_name=config.sys_name,
        model=config.model,
        ip_addr_table=config.ip_addr_table,
        printer_mib_serial=config.printer_mib_serial,
        vendor_serial=config.vendor_serial,
        serial_encoding=config.serial_encoding,
        uptime=lambda: TimeTicks(int((clock() - started) * 100)),
    )

    family = socket.AF_INET6 if ":" in config.listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((config.listen.host, config.listen.port))
    except OSError as exc:
        sock.close()
        raise SnmpAgentError("devicesim.snmp_bind",
                             f"cannot listen for SNMP on UDP {config.listen}: {exc.strerror}; "
                             "pick another --snmp port (or 0)") from None
    sock.setblocking(False)
    port = sock.getsockname()[1]

    engine = snmp_engine.SnmpEngine()
    try:
        if family == socket.AF_INET6:
            transport: Any = udp6.Udp6AsyncioTransport().open_server_mode(sock=sock)
            snmp_config.add_transport(engine, udp6.DOMAIN_NAME, transport)
        else:
            transport = udp.UdpAsyncioTransport().open_server_mode(sock=sock)
            snmp_config.add_transport(engine, udp.DOMAIN_NAME, transport)
        if config.community:
            snmp_config.add_v1_system(engine, "devicesim-read", config.community)
            snmp_config.add_vacm_user(engine, 2, "devicesim-read", "noAuthNoPriv", (1, 3, 6))
        if config.v3_user:
            auth = {
                "MD5": snmp_config.USM_AUTH_HMAC96_MD5, "SHA": snmp_config.USM_AUTH_HMAC96_SHA,
                "SHA224": snmp_config.USM_AUTH_HMAC128_SHA224,
                "SHA256": snmp_config.USM_AUTH_HMAC192_SHA256,
                "SHA384": snmp_config.USM_AUTH_HMAC256_SHA384,
                "SHA512": snmp_config.USM_AUTH_HMAC384_SHA512,
            }[config.v3_auth_protocol.upper()]
            priv = {
                "DES": snmp_config.USM_PRIV_CBC56_DES, "AES": snmp_config.USM_PRIV_CFB128_AES,
                "AES192": snmp_config.USM_PRIV_CFB192_AES_BLUMENTHAL,
                "AES256": snmp_config.USM_PRIV_CFB256_AES_BLUMENTHAL,
            }[config.v3_priv_protocol.upper()]
            if config.v3_priv_key:
                level = "authPriv"
                snmp_config.add_v3_user(engine, config.v3_user, auth, config.v3_auth_key,
                                        priv, config.v3_priv_key)
            elif config.v3_auth_key:
                level = "authNoPriv"
                snmp_config.add_v3_user(engine, config.v3_user, auth, config.v3_auth_key)
            else:
                level = "noAuthNoPriv"
                snmp_config.add_v3_user(engine, config.v3_user)
            snmp_config.add_vacm_user(engine, 3, config.v3_user, level, (1, 3, 6))

        context = snmp_context.SnmpContext(engine)
        controller = _TableController(table, _to_wire, rfc1905.noSuchInstance,
                                      rfc1905.endOfMibView, rfc1902.ObjectName)
        context.unregister_context_name(b"")
        context.register_context_name(b"", controller)
        cmdrsp.GetCommandResponder(engine, context)
        cmdrsp.NextCommandResponder(engine, context)
        cmdrsp.BulkCommandResponder(engine, context)
        engine.transport_dispatcher.job_started(1)
        # open_server_mode schedules the endpoint; wait until the socket is really served
        await asyncio.wait_for(transport._lport, timeout=5)
    except BaseException:
        engine.transport_dispatcher.close_dispatcher()
        sock.close()
        raise
    return SnmpAgentHandle(engine, HostPort(config.listen.host, port), config, table)
