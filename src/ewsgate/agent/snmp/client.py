"""A small SNMP reader over pysnmp 7's asyncio API: GET and a bounded table walk.

Theory of operation. One pysnmp ``SnmpEngine`` per event loop (creating one costs tens of ms
and its first request more; later requests take ~10 ms), shared by every check the agent runs:
:func:`shared_client` hands it out. pysnmp's local configuration keeps one entry per
community or v3 user; a v3 user name seen with new keys is reconfigured, so checks that share a
user name are serialised by a per-user lock to keep one device's keys from swapping under
another's request.

Everything pysnmp returns is translated here, in one place, into plain Python: OCTET STRING
(and IpAddress) → ``bytes``, integers → ``int``, OBJECT IDENTIFIER → ``tuple[int, ...]``,
noSuchObject / noSuchInstance / endOfMibView → ``None``. Failures become three exceptions:

* :class:`SnmpNoAnswer` - nothing came back in time: a wrong community, SNMP disabled, a
  filtered port or no host at all (SNMP cannot tell these apart; agents drop bad communities);
* :class:`SnmpAuthFailed` - a v3 report: unknown user, wrong digest (auth key), decryption
  error (priv key), unsupported security level;
* :class:`SnmpError` - any other error indication or error status.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ewsgate.agent.snmp.oids import Oid, oid_str
from ewsgate.agent.snmp.transport import PeerTransports

__all__ = [
    "AUTH_PROTOCOLS",
    "PRIV_PROTOCOLS",
    "SnmpAuthFailed",
    "SnmpClient",
    "SnmpError",
    "SnmpNoAnswer",
    "SnmpSettings",
    "SnmpSettingsError",
    "SnmpValue",
    "shared_client",
]

SnmpValue = bytes | int | tuple[int, ...] | None

AUTH_PROTOCOLS = ("MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512")
#: AES192/AES256 are the Blumenthal key-extension variants (what net-snmp calls AES192/AES256)
PRIV_PROTOCOLS = ("DES", "AES", "AES192", "AES256")


class SnmpSettingsError(ValueError):
    """SNMP settings that cannot work; ``code`` is stable, the message says what to change."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class SnmpSettings:
    """How to talk SNMP to one device. ``version="off"`` skips SNMP (neighbour table only).

    v3 security level follows the keys: both keys → authPriv, auth key only → authNoPriv.
    """

    version: Literal["2c", "3", "off"] = "2c"
    port: int = 161
    community: str = "public"
    v3_user: str = ""
    v3_auth_key: str = ""
    v3_priv_key: str = ""
    v3_auth_protocol: str = "SHA"
    v3_priv_protocol: str = "AES"
    #: retransmissions per request (0 = send once)
    retries: int = 1

    def __post_init__(self) -> None:
        if self.version not in ("2c", "3", "off"):
            raise SnmpSettingsError("snmp.bad_version",
                                    f"SNMP version {self.version!r}: use '2c', '3' or 'off'")
        if not 0 < self.port < 65536:
            raise SnmpSettingsError("snmp.bad_port", f"SNMP port {self.port}: use 1 to 65535")
        if not 0 <= self.retries <= 5:
            raise SnmpSettingsError("snmp.bad_retries", "SNMP retries: use 0 to 5")
        if self.version == "2c" and not self.community:
            raise SnmpSettingsError("snmp.no_community",
                                    "SNMP v2c needs a community (the device's read community)")
        if self.version == "3":
            if not self.v3_user:
                raise SnmpSettingsError("snmp.no_v3_user", "SNMP v3 needs a user name")
            if self.v3_auth_protocol.upper() not in AUTH_PROTOCOLS:
                raise SnmpSettingsError("snmp.bad_v3_auth",
                                        f"SNMP v3 auth protocol {self.v3_auth_protocol!r}: use "
                                        f"one of {', '.join(AUTH_PROTOCOLS)}")
            if self.v3_priv_protocol.upper() not in PRIV_PROTOCOLS:
                raise SnmpSettingsError("snmp.bad_v3_priv",
                                        f"SNMP v3 privacy protocol {self.v3_priv_protocol!r}: use "
                                        f"one of {', '.join(PRIV_PROTOCOLS)}")
            for label, key in (("auth", self.v3_auth_key), ("privacy", self.v3_priv_key)):
                if key and len(key) < 8:
                    raise SnmpSettingsError("snmp.short_v3_key",
                                            f"the SNMP v3 {label} key must be at least 8 "
                                            "characters (RFC 3414)")
            if self.v3_priv_key and not self.v3_auth_key:
                raise SnmpSettingsError("snmp.priv_without_auth",
                                        "an SNMP v3 privacy key needs an auth key as well")

    def __repr__(self) -> str:  # keys never reach logs
        return (f"SnmpSettings(version={self.version!r}, port={self.port}, "
                f"v3_user={self.v3_user!r}, v3_auth_protocol={self.v3_auth_protocol!r}, "
                f"v3_priv_protocol={self.v3_priv_protocol!r}, retries={self.retries})")

    @property
    def label(self) -> str:
        """``"SNMP v2c"`` or ``"SNMP v3 (user tech, authPriv SHA/AES)"`` for messages."""
        if self.version != "3":
            return f"SNMP v{self.version}"
        level = ("authPriv" if self.v3_priv_key else "authNoPriv" if self.v3_auth_key
                 else "noAuthNoPriv")
        return (f"SNMP v3 (user {self.v3_user}, {level} "
                f"{self.v3_auth_protocol.upper()}/{self.v3_priv_protocol.upper()})")


class SnmpError(Exception):
    """SNMP failed in a way other than silence or v3 authentication; ``code`` is stable."""

    code = "snmp.error"


class SnmpNoAnswer(SnmpError):
    """No answer in time (wrong community, SNMP disabled, filtered port, no such host)."""

    code = "snmp.no_answer"


class SnmpAuthFailed(SnmpError):
    """The device refused our v3 credentials (a USM report came back)."""

    code = "snmp.v3_auth_failed"


_AUTH_INDICATIONS = {
    "WrongDigest": "wrong v3 auth key or auth protocol (wrong digest)",
    "UnknownUserName": "the device does not know this v3 user",
    "DecryptionError": "wrong v3 privacy key or privacy protocol (decryption failed)",
    "UnsupportedSecurityLevel": "the device does not allow this v3 security level for the user",
    "AuthenticationFailure": "v3 authentication failed",
    "NotInTimeWindow": "v3 message outside the device's time window",
}


def _plain(value: Any) -> SnmpValue:
    from pyasn1.type import univ
    from pysnmp.proto import rfc1902, rfc1905

    if isinstance(value, rfc1905.NoSuchObject | rfc1905.NoSuchInstance | rfc1905.EndOfMibView):
        return None
    if isinstance(value, rfc1902.OctetString | rfc1902.IpAddress | rfc1902.Opaque):
        return bytes(value.asOctets())
    if isinstance(value, univ.ObjectIdentifier):
        return tuple(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return bytes(value.asOctets()) if hasattr(value, "asOctets") else None


class SnmpClient:
    """Reads OIDs from devices. Bound to the event loop it is first used on."""

    def __init__(self) -> None:
        self._engine: Any = None
        self._v3_locks: dict[str, asyncio.Lock] = {}
        #: one connected UDP socket per device: answers from another source are dropped
        self.peers = PeerTransports()

    def _get_engine(self) -> Any:
        if self._engine is None:
            from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

            self._engine = SnmpEngine()
        return self._engine

    def _auth(self, settings: SnmpSettings) -> Any:
        from pysnmp.hlapi.v3arch.asyncio import CommunityData, UsmUserData
        from pysnmp.hlapi.v3arch.asyncio import auth as hl_auth

        if settings.version == "2c":
            return CommunityData(settings.community, mpModel=1)  # noqa: S508 - printers speak v2c
        auth = {
            "MD5": hl_auth.USM_AUTH_HMAC96_MD5, "SHA": hl_auth.USM_AUTH_HMAC96_SHA,
            "SHA224": hl_auth.USM_AUTH_HMAC128_SHA224,
            "SHA256": hl_auth.USM_AUTH_HMAC192_SHA256,
            "SHA384": hl_auth.USM_AUTH_HMAC256_SHA384,
            "SHA512": hl_auth.USM_AUTH_HMAC384_SHA512,
        }[settings.v3_auth_protocol.upper()]
        priv = {
            "DES": hl_auth.USM_PRIV_CBC56_DES, "AES": hl_auth.USM_PRIV_CFB128_AES,
            "AES192": hl_auth.USM_PRIV_CFB192_AES_BLUMENTHAL,
            "AES256": hl_auth.USM_PRIV_CFB256_AES_BLUMENTHAL,
        }[settings.v3_priv_protocol.upper()]
        if settings.v3_priv_key:
            return UsmUserData(settings.v3_user, settings.v3_auth_key, settings.v3_priv_key,
                               authProtocol=auth, privProtocol=priv)
        if settings.v3_auth_key:
            return UsmUserData(settings.v3_user, settings.v3_auth_key, authProtocol=auth)
        return UsmUserData(settings.v3_user)  # noqa: S509 - the site chose the level

    async def _target(self, host: str, settings: SnmpSettings, budget: float) -> Any:
        from pysnmp.hlapi.v3arch.asyncio import Udp6TransportTarget, UdpTransportTarget

        # pysnmp keeps one target entry per distinct timeout: quantise it to 50 ms steps so a
        # long-running agent reuses a handful of entries instead of adding one per request
        per_try = max(0.05, round(budget / (settings.retries + 1) / 0.05) * 0.05)
        cls = Udp6TransportTarget if ":" in host else UdpTransportTarget
        target = await cls.create((host, settings.port), timeout=per_try, retries=settings.retries)
        # requests go out (and answers come in) only through the device's connected socket
        target.TRANSPORT_DOMAIN = await self.peers.ensure(self._get_engine(), host,
                                                          settings.port)
        return target

    async def _request(self, host: str, settings: SnmpSettings, budget: float,
                       send: Any) -> Any:
        """Configure the target, call ``send(engine, target_name, callback)``, await the reply.

        Var-binds go out as raw OIDs (no MIB resolution: the hlapi's MIB view costs ~1 s on
        first use and milliseconds per request, and we never need names)."""
        from pysnmp.hlapi.v3arch.asyncio.cmdgen import LCD

        if settings.version == "off":
            raise SnmpSettingsError("snmp.off", "SNMP is off for this device")
        engine = self._get_engine()
        target = await self._target(host, settings, budget)
        auth = self._auth(settings)
        loop = asyncio.get_running_loop()

        async def exchange() -> Any:
            future: asyncio.Future[Any] = loop.create_future()

            def callback(_engine: Any, _handle: Any, indication: Any, status: Any, index: Any,
                         var_binds: Any, _ctx: Any) -> None:
                if not future.done():
                    future.set_result((indication, status, index, var_binds))

            target_name, _ = LCD.configure(engine, auth, target, b"")
            send(engine, target_name, callback)
            return await future

        lock = None
        if settings.version == "3":
            lock = self._v3_locks.setdefault(settings.v3_user, asyncio.Lock())
        try:
            # pysnmp retries on its own; the outer bound only guards against a lost callback
            async with asyncio.timeout(budget + 1.0):
                if lock is None:
                    reply = await exchange()
                else:
                    async with lock:
                        reply = await exchange()
        except TimeoutError:
            raise SnmpNoAnswer("no SNMP answer in time") from None
        indication, status, index, var_binds = reply
        if indication:
            kind = type(indication).__name__
            if kind == "RequestTimedOut":
                raise SnmpNoAnswer(f"no SNMP answer within {budget:.1f} s")
            if kind in _AUTH_INDICATIONS:
                raise SnmpAuthFailed(_AUTH_INDICATIONS[kind])
            raise SnmpError(f"SNMP error: {indication}")
        if status:
            where = ""
            if index and int(index) <= len(var_binds):
                where = f" at {oid_str(tuple(var_binds[int(index) - 1][0]))}"
            name = status.prettyPrint() if hasattr(status, "prettyPrint") else str(status)
            raise SnmpError(f"the device answered with SNMP error {name}{where}")
        return var_binds

    async def get(self, host: str, settings: SnmpSettings, oids: Sequence[Oid], *,
                  budget: float) -> dict[Oid, SnmpValue]:
        """One GET for ``oids``; absent ones map to ``None``."""
        from pysnmp.entity.rfc3413 import cmdgen
        from pysnmp.proto.rfc1902 import Null, ObjectName

        var_binds = [(ObjectName(name), Null("")) for name in oids]

        def send(engine: Any, target_name: str, callback: Any) -> None:
            cmdgen.GetCommandGenerator().send_varbinds(engine, target_name, None, b"",
                                                       var_binds, callback)

        reply = await self._request(host, settings, budget, send)
        found = {tuple(name): _plain(value) for name, value in reply}
        return {name: found.get(name) for name in oids}

    async def walk(self, host: str, settings: SnmpSettings, prefix: Oid, *, budget: float,
                   max_rows: int = 64) -> list[tuple[Oid, SnmpValue]]:
        """The rows under ``prefix`` (GETBULK, 16 per request), at most ``max_rows``."""
        from pysnmp.entity.rfc3413 import cmdgen
        from pysnmp.proto import rfc1905
        from pysnmp.proto.rfc1902 import Null, ObjectName

        rows: list[tuple[Oid, SnmpValue]] = []
        cursor = prefix
        while len(rows) < max_rows:

            def send(engine: Any, target_name: str, callback: Any, cursor: Oid = cursor) -> None:
                cmdgen.BulkCommandGeneratorSingleRun().send_varbinds(
                    engine, target_name, None, b"", 0, 16, [(ObjectName(cursor), Null(""))],
                    callback)

            reply = await self._request(host, settings, budget, send)
            if not reply:
                return rows
            for name, value in reply:
                key = tuple(name)
                # out of the subtree, endOfMibView, or a device that does not advance: done
                if (key[: len(prefix)] != prefix or key <= cursor
                        or isinstance(value, rfc1905.EndOfMibView)):
                    return rows
                rows.append((key, _plain(value)))
                cursor = key
                if len(rows) >= max_rows:
                    break
        return rows

    def close(self) -> None:
        """Release the engine's UDP sockets."""
        if self._engine is not None:
            self.peers.close(self._engine)
            self._engine.close_dispatcher()
            self._engine = None


_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SnmpClient] = (
    weakref.WeakKeyDictionary())


def shared_client() -> SnmpClient:
    """The running loop's :class:`SnmpClient` (created on first use)."""
    loop = asyncio.get_running_loop()
    client = _SHARED.get(loop)
    if client is None:
        client = _SHARED[loop] = SnmpClient()
    return client
