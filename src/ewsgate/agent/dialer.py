"""The agent's device dialer: the verified device's IP, its configured ports, nothing else.

A tunnel stream names a *port index* into the device's endpoint list (from the ticket's ``dev``
claim, which the portal built from the device record the agent just verified). The dialer turns
that index into ``(ip, port, scheme)`` and connects. It refuses, and logs, everything else:

* an index outside the endpoint list (an unconfigured port);
* any host other than the verified IP (:meth:`DeviceDialer.authorize` is the one gate);
* a target the agent's address policy refuses (:mod:`ewsgate.agent.address_policy`): a host
  name rather than an IP literal, loopback, link-local, multicast, unspecified, reserved, a
  cloud metadata endpoint, 100.64.0.0/10, the agent's own addresses, an IPv6 spelling of an
  IPv4 address, anything outside the site subnets when they are set -- the agent's own machine
  and the infrastructure around it are never reachable through a tunnel. The policy is asked
  before every connect, so a refused address never sees a SYN.

Loopback is allowed only with :data:`ALLOW_LOOPBACK_FOR_TESTS`, an object (not a flag, not an
environment variable, not a config key) that test code must import and pass explicitly, so no
production configuration can switch it on by accident; it allows loopback and nothing else.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field, replace

from ewsgate.agent.address_policy import ALLOW_LOOPBACK_FOR_TESTS, AddressPolicy, TestOnlySwitch
from ewsgate.agent.device_tls import DeviceCertChanged, DeviceCertPin
from ewsgate.aio.errors import TunnelError
from ewsgate.aio.splice import SpliceProtocol, splice_connect
from ewsgate.aio.streams import TunnelStream
from ewsgate.aio.tls import peer_certificate_sha256
from ewsgate.tunnel import ErrorCode

__all__ = [
    "ALLOW_LOOPBACK_FOR_TESTS",
    "DestinationRefused",
    "DeviceDialer",
    "DeviceEndpoint",
    "DeviceTarget",
    "DialPolicy",
]

log = logging.getLogger(__name__)


class DestinationRefused(TunnelError):
    """The requested destination is not the verified device's configured endpoint."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.DESTINATION_REFUSED)


@dataclass(frozen=True, slots=True)
class DeviceEndpoint:
    """One configured EWS endpoint: ``http`` or ``https`` and a port."""

    scheme: str
    port: int

    def __post_init__(self) -> None:
        if self.scheme not in ("http", "https") or not 0 < self.port < 65536:
            raise ValueError(f"bad device endpoint {self.scheme}:{self.port}")


@dataclass(frozen=True, slots=True)
class DeviceTarget:
    """The verified device: its IP literal and its configured endpoints, in order."""

    ip: str
    endpoints: tuple[DeviceEndpoint, ...]
    hostname: str = ""

    @classmethod
    def from_claim(cls, dev: dict[str, object]) -> DeviceTarget:
        """From a ticket's / OpenSession's ``dev``: {"ip", "hostname", "endpoints": [...]}."""
        raw = dev.get("endpoints")
        items = raw if isinstance(raw, list) else []
        return cls(ip=str(dev.get("ip", "")),
                   endpoints=tuple(DeviceEndpoint(str(e["scheme"]), int(e["port"]))
                                   for e in items),
                   hostname=str(dev.get("hostname") or ""))


@dataclass(frozen=True, slots=True)
class DialPolicy:
    """How the dialer may connect. Defaults are the production rules."""

    allow_loopback: TestOnlySwitch | None = None
    connect_within: float = 10.0
    refused_log: list[str] = field(default_factory=list, compare=False, repr=False)
    #: the agent's address policy (site subnets, own addresses); ``allow_loopback`` is added
    addresses: AddressPolicy | None = None

    def __post_init__(self) -> None:
        if self.allow_loopback is not None and self.allow_loopback is not ALLOW_LOOPBACK_FOR_TESTS:
            raise TypeError("allow_loopback takes only ALLOW_LOOPBACK_FOR_TESTS")

    @property
    def address_policy(self) -> AddressPolicy:
        """The address policy every dial obeys (production rules unless told otherwise)."""
        policy = self.addresses if self.addresses is not None else AddressPolicy()
        if self.allow_loopback is ALLOW_LOOPBACK_FOR_TESTS:
            policy = replace(policy, allow_loopback=ALLOW_LOOPBACK_FOR_TESTS)
        return policy


class DeviceDialer:
    """Dials the one verified device of one session."""

    def __init__(self, target: DeviceTarget, policy: DialPolicy | None = None) -> None:
        self.target = target
        self.policy = policy or DialPolicy()
        self.pin = DeviceCertPin(target.ip)
        self._addresses = self.policy.address_policy
        self._ip = self._check_ip(target.ip)

    def _refuse(self, message: str) -> DestinationRefused:
        log.warning("%s", message if message.startswith("refused: ")
                    else f"destination refused: {message}")
        self.policy.refused_log.append(message)
        return DestinationRefused(message)

    def _check_ip(self, host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        refusal = self._addresses.check(host)
        if refusal is not None:
            raise self._refuse(refusal.message)
        return ipaddress.ip_address(host)

    def authorize(self, host: str, port: int) -> DeviceEndpoint:
        """The endpoint for ``host:port`` if it is the verified device's; else refuse (and log)."""
        ip = self._check_ip(host)
        if ip != self._ip:
            raise self._refuse(f"{host} is not the verified device {self.target.ip}")
        for endpoint in self.target.endpoints:
            if endpoint.port == port:
                return endpoint
        raise self._refuse(f"port {port} is not a configured endpoint of {self.target.ip}")

    def resolve(self, port_index: int) -> DeviceEndpoint:
        """The endpoint at ``port_index``; refuse an index that is not configured."""
        if not 0 <= port_index < len(self.target.endpoints):
            raise self._refuse(f"port index {port_index} is not configured for "
                               f"{self.target.ip} ({len(self.target.endpoints)} endpoints)")
        return self.target.endpoints[port_index]

    async def connect(self, stream: TunnelStream) -> SpliceProtocol:
        """Dial the endpoint ``stream.port_index`` and return the (not started) splice."""
        endpoint = self.resolve(stream.port_index)
        endpoint = self.authorize(self.target.ip, endpoint.port)
        tls = self.pin.context if endpoint.scheme == "https" else None
        splice = await splice_connect(stream, str(self._ip), endpoint.port, tls,
                                      self.policy.connect_within)
        if tls is not None:
            assert splice.transport is not None
            fingerprint = peer_certificate_sha256(splice.transport.get_extra_info("ssl_object"))
            try:
                self.pin.check(fingerprint, endpoint.port)
            except DeviceCertChanged:
                splice.transport.abort()
                raise
        return splice
