"""The agent's address policy: which IP addresses the agent may send a packet to at all.

Theory of operation. Every packet the agent sends toward a device -- the SNMP requests of the
identity check, the TCP connect that primes the neighbour table, the device connections of a
tunnel -- goes to one IP address the portal recorded. Before the first packet, the caller asks
:meth:`AddressPolicy.check`; a :class:`Refusal` means nothing is sent, and its ``message`` is
the sentence that reaches the job ("refused: 169.254.169.254 is the cloud metadata endpoint;
the agent never contacts it; check the device's recorded IP").

The rules, in the order they are applied (the first that matches decides)::

    1  not an IP literal, or an IPv6 zone index (``%eth0``)      refused
    2  an IPv6 spelling of an IPv4 address: IPv4-mapped,         refused (and the IPv4 address
       IPv4-compatible, IPv4-translated, NAT64, 6to4, Teredo      is named when it is forbidden)
    3  a cloud metadata endpoint: 169.254.169.254,               refused
       fd00:ec2::254, 100.100.100.200, 192.0.0.192
    4  the fixed ranges of ``_RANGES`` (loopback, link-local,    refused
       multicast, unspecified, "this network", reserved,
       limited broadcast, 100.64.0.0/10, 192.0.0.0/24, ...)
         - except loopback with ALLOW_LOOPBACK_FOR_TESTS          allowed (tests only)
    5  one of this host's own addresses, or the broadcast or     refused
       network address of one of its IPv4 subnets
    6  site subnets set and the address in none of them, or      refused
       it is a site subnet's network / broadcast address
    7  the portal set site subnets for the installation and the  refused
       address is in none of them (or is a network / broadcast
       address of one)
    8  anything else                                             allowed

Two lists of site subnets may apply: the agent's own ``--site-subnets`` (rule 6) and the list
the portal keeps for the installation, carried in each ``VerifyDevice`` / ``OpenSession``
payload (rule 7; :meth:`AddressPolicy.narrowed`). An address must be inside both when both are
set -- the intersection, so the tighter list wins and neither side can widen the other.

The rules are pure: :func:`judge` takes the address and every input as values. The one input
read from the host, its own addresses, comes from the ``host_addresses`` callable of
:class:`AddressPolicy` (default: the kernel's list over rtnetlink, read fresh on every check
so a DHCP change is seen; see :mod:`ewsgate.agent.host_addresses`).

:data:`ALLOW_LOOPBACK_FOR_TESTS` is an object, not a flag, environment variable or config key:
test code (and the one-machine demo's own entry point) must import it and pass it explicitly,
so no configuration can switch it on. It allows loopback addresses (127.0.0.0/8, ::1) and
nothing else -- never the metadata endpoints, link-local, the host's other addresses; and the
site subnets still apply to them (no site subnet holds loopback, so a loopback device is
refused once either list is set).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

__all__ = [
    "ALLOW_LOOPBACK_FOR_TESTS",
    "METADATA_ENDPOINTS",
    "AddressPolicy",
    "HostAddresses",
    "IPAddress",
    "Refusal",
    "SiteSubnetError",
    "TestOnlySwitch",
    "judge",
    "parse_portal_subnets",
    "parse_site_subnets",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TestOnlySwitch:
    """The type of :data:`ALLOW_LOOPBACK_FOR_TESTS`; there is exactly one instance."""

    __test__ = False  # not a pytest test class

    def __repr__(self) -> str:
        return "ALLOW_LOOPBACK_FOR_TESTS"


#: pass as ``AddressPolicy(allow_loopback=ALLOW_LOOPBACK_FOR_TESTS)`` in tests only
ALLOW_LOOPBACK_FOR_TESTS = TestOnlySwitch()

_ip = ipaddress.ip_address
_net = ipaddress.ip_network

#: the cloud instance metadata services; a device is never there, credentials are
METADATA_ENDPOINTS: dict[IPAddress, str] = {
    _ip("169.254.169.254"): "the cloud metadata endpoint",
    _ip("fd00:ec2::254"): "the cloud metadata endpoint (IPv6)",
    _ip("100.100.100.200"): "the cloud metadata endpoint (Alibaba Cloud)",
    _ip("192.0.0.192"): "a cloud metadata endpoint",
}

#: (network, code, what it is); the first match decides, so specific entries come first
_RANGES: tuple[tuple[IPNetwork, str, str], ...] = (
    (_net("0.0.0.0/32"), "unspecified", "the unspecified address"),
    (_net("::/128"), "unspecified", "the unspecified address"),
    (_net("255.255.255.255/32"), "broadcast", "the limited broadcast address"),
    (_net("127.0.0.0/8"), "loopback", "a loopback address (this host)"),
    (_net("::1/128"), "loopback", "the loopback address (this host)"),
    (_net("0.0.0.0/8"), "reserved", "a \"this network\" address (0.0.0.0/8)"),
    (_net("169.254.0.0/16"), "link_local", "a link-local address (169.254.0.0/16)"),
    (_net("fe80::/10"), "link_local", "a link-local address (fe80::/10)"),
    (_net("fec0::/10"), "reserved", "a deprecated site-local address (fec0::/10)"),
    (_net("224.0.0.0/4"), "multicast", "a multicast address"),
    (_net("ff00::/8"), "multicast", "a multicast address"),
    (_net("100.64.0.0/10"), "shared", "a carrier-grade NAT address (100.64.0.0/10), where "
     "cloud and provider infrastructure lives"),
    (_net("192.0.0.0/24"), "reserved", "an IETF protocol assignment (192.0.0.0/24)"),
    (_net("240.0.0.0/4"), "reserved", "a reserved address (240.0.0.0/4)"),
)

_V4_MAPPED = _net("::ffff:0:0/96")
_V4_TRANSLATED = _net("::ffff:0:0:0/96")
_NAT64 = _net("64:ff9b::/96")
_NAT64_LOCAL = _net("64:ff9b:1::/48")


class SiteSubnetError(ValueError):
    """A ``--site-subnets`` value that cannot be used; the message says what to write."""


@dataclass(frozen=True, slots=True)
class HostAddresses:
    """This host's own addresses, and the broadcast and network addresses of its IPv4 subnets."""

    addresses: frozenset[IPAddress] = frozenset()
    broadcasts: frozenset[IPAddress] = frozenset()
    #: set when the addresses could not be read: every check is refused with this reason
    unavailable: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """Why an address is never contacted. ``message`` is the sentence for the job."""

    address: str
    #: stable machine form, ``address.<rule>`` (``address.metadata``, ``address.loopback``, ...)
    code: str
    #: what the address is ("169.254.169.254 is the cloud metadata endpoint")
    reason: str
    #: what a person should do about it
    advice: str = "check the device's recorded IP"

    @property
    def message(self) -> str:
        return f"refused: {self.reason}; the agent never contacts it; {self.advice}"

    def __str__(self) -> str:
        return self.message


def parse_site_subnets(text: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/24, 2001:db8:5::/64"`` (or a list, from a config file) → networks.

    Host bits must be zero (``10.0.0.5/24`` is refused with the network it probably meant), and
    a subnet that lies wholly inside a range the agent never reaches is refused as a mistake.
    """
    items = [part.strip() for part in text.split(",")] if isinstance(text, str) else \
        [str(part).strip() for part in text]
    networks: list[IPNetwork] = []
    for item in items:
        if not item:
            continue
        try:
            network = _net(item, strict=True)
        except ValueError:
            try:
                loose = _net(item, strict=False)
            except ValueError:
                raise SiteSubnetError(f"site subnet {item!r} is not a network; write it as "
                                      "ADDRESS/PREFIX, e.g. 10.20.0.0/24 or "
                                      "2001:db8:5::/64") from None
            raise SiteSubnetError(f"site subnet {item!r} has host bits set; did you mean "
                                  f"{loose}?") from None
        for forbidden, _code, what in _RANGES:
            if network.version == forbidden.version and network.subnet_of(forbidden):  # type: ignore[arg-type]
                raise SiteSubnetError(f"site subnet {network} is {what}; the agent never "
                                      "reaches it, so it cannot be a site subnet")
        networks.append(network)
    return tuple(networks)


def parse_portal_subnets(value: object) -> tuple[IPNetwork, ...]:
    """The ``site_subnets`` of a command payload (a list of CIDR texts, or absent) → networks.

    Absent, ``null`` or an empty list: the portal sets no subnets. Anything else that is not a
    list of valid site subnets raises :class:`SiteSubnetError`, and the caller refuses the
    command: a list the agent cannot read is never taken for "no limit".
    """
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SiteSubnetError(f"the portal's site_subnets must be a list of networks, not "
                              f"{type(value).__name__}")
    return parse_site_subnets(value)


def _embedded_v4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address | None] | None:
    """If ``ip`` is an IPv6 way of writing an IPv4 address: (which way, the IPv4 address)."""
    value = int(ip)
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped IPv6", ip.ipv4_mapped
    if ip in _V4_TRANSLATED:
        return "IPv4-translated IPv6", ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if value >> 32 == 0 and value > 1:
        return "IPv4-compatible IPv6", ipaddress.IPv4Address(value)
    if ip in _NAT64:
        return "NAT64 IPv6", ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip in _NAT64_LOCAL:
        return "local-use NAT64 IPv6", None
    if ip.sixtofour is not None:
        return "6to4 IPv6", ip.sixtofour
    if ip.teredo is not None:
        return "Teredo IPv6", ip.teredo[1]
    return None


def _fixed_rule(ip: IPAddress) -> tuple[str, str] | None:
    """(code, what) of the metadata endpoint or fixed range ``ip`` is in; ``None`` if none."""
    if ip in METADATA_ENDPOINTS:
        return "metadata", METADATA_ENDPOINTS[ip]
    for network, code, what in _RANGES:
        if ip.version == network.version and ip in network:
            return code, what
    if ip.is_reserved:
        return "reserved", "a reserved address"
    return None


def judge(address: str | IPAddress, *,
          site_subnets: tuple[IPNetwork, ...] = (),
          portal_subnets: tuple[IPNetwork, ...] = (),
          host: HostAddresses = HostAddresses(),
          allow_loopback: TestOnlySwitch | None = None) -> Refusal | None:
    """``None`` when the agent may send to ``address``; else the :class:`Refusal` (pure)."""
    text = str(address)
    if isinstance(address, str):
        if "%" in address:
            return Refusal(address=text, code="address.zone",
                           reason=f"{text} carries an IPv6 zone index, which only a "
                                  "link-local address needs",
                           advice="record the device's global or site address")
        try:
            ip: IPAddress = _ip(address)
        except ValueError:
            return Refusal(address=text, code="address.not_ip",
                           reason=f"{text!r} is not an IP address (the agent reaches a device "
                                  "only by the IP on record, never by a host name)",
                           advice="record the device's IPv4 or IPv6 address")
    else:
        ip = address
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            return judge(f"{ip}", site_subnets=site_subnets, portal_subnets=portal_subnets,
                         host=host, allow_loopback=allow_loopback)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_v4(ip)
        if embedded is not None:
            how, v4 = embedded
            inner = _fixed_rule(v4) if v4 is not None else None
            written = f"{text} is {v4 or 'an IPv4 address'} written as {how}"
            if v4 is not None and inner is not None:
                reason = f"{written}, and {v4} is {inner[1]}"
                code = f"address.{inner[0]}"
            else:
                reason = (f"{written}; a device is dialled only by its plain address, so that "
                          "no loopback, link-local, multicast, unspecified or reserved address "
                          "is reached through such a spelling")
                code = "address.v4_in_v6"
            return Refusal(address=text, code=code, reason=reason,
                           advice=f"record the device's IPv4 address{f' {v4}' if v4 else ''} "
                                  "as it is")
    fixed = _fixed_rule(ip)
    if fixed is not None:
        code, what = fixed
        if code != "loopback" or allow_loopback is not ALLOW_LOOPBACK_FOR_TESTS:
            return Refusal(address=text, code=f"address.{code}", reason=f"{ip} is {what}")
        # the test switch: loopback skips the own-host rule; the site subnets still apply
        return _sites(ip, text, site_subnets, portal_subnets)
    if host.unavailable is not None:
        return Refusal(address=text, code="address.host_unknown",
                       reason=f"this host's own addresses cannot be read ({host.unavailable}), "
                              f"so {ip} might be this host",
                       advice="check that the agent may read the host's network configuration")
    if ip in host.addresses:
        return Refusal(address=text, code="address.own_host",
                       reason=f"{ip} is an address of the agent's own host")
    if ip in host.broadcasts:
        return Refusal(address=text, code="address.broadcast",
                       reason=f"{ip} is the broadcast or network address of one of this "
                                     "host's subnets")
    return _sites(ip, text, site_subnets, portal_subnets)


def _sites(ip: IPAddress, text: str, site_subnets: tuple[IPNetwork, ...],
           portal_subnets: tuple[IPNetwork, ...]) -> Refusal | None:
    """Rules 6 and 7: the agent's own site subnets, then the portal's (both must allow)."""
    for subnets, whose, where in (
            (site_subnets, "this installation's site subnets", "the agent's --site-subnets"),
            (portal_subnets, "the site subnets the portal set for this installation",
             "the installation's site subnets on the portal")):
        refusal = _outside(ip, text, subnets, whose, where)
        if refusal is not None:
            return refusal
    return None


def _outside(ip: IPAddress, text: str, subnets: tuple[IPNetwork, ...], whose: str,
             where: str) -> Refusal | None:
    """Rules 6 and 7: ``ip`` must be a host address of one of ``subnets`` when any are set."""
    if not subnets:
        return None
    inside = [net for net in subnets if net.version == ip.version and ip in net]
    if not inside:
        listed = ", ".join(str(net) for net in subnets)
        return Refusal(address=text, code="address.outside_site",
                       reason=f"{ip} is outside {whose} ({listed})",
                       advice=f"check the device's recorded IP, or add its subnet to {where}")
    for net in inside:
        if isinstance(net, ipaddress.IPv4Network) and net.prefixlen <= 30 and \
                ip in (net.network_address, net.broadcast_address):
            return Refusal(address=text, code="address.broadcast",
                           reason=f"{ip} is the network or broadcast address of site "
                                  f"subnet {net}")
    return None


def _read_host_addresses() -> HostAddresses:
    from ewsgate.agent.host_addresses import read_host_addresses

    return read_host_addresses()


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressPolicy:
    """Where the agent may send packets. Defaults are the production rules."""

    #: when set, nothing outside these networks is reached (the agent's ``--site-subnets``)
    site_subnets: tuple[IPNetwork, ...] = ()
    #: when set, nothing outside these either (the portal's list for the installation)
    portal_subnets: tuple[IPNetwork, ...] = ()
    #: this host's own addresses, read on every check (inject a fixed value in tests)
    host_addresses: Callable[[], HostAddresses] = field(default=_read_host_addresses,
                                                        compare=False, repr=False)
    allow_loopback: TestOnlySwitch | None = None

    def __post_init__(self) -> None:
        if self.allow_loopback is not None and self.allow_loopback is not ALLOW_LOOPBACK_FOR_TESTS:
            raise TypeError("allow_loopback takes only ALLOW_LOOPBACK_FOR_TESTS")
        for net in (*self.site_subnets, *self.portal_subnets):
            if not isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network):
                raise TypeError("site_subnets takes ip_network values; parse text with "
                                "parse_site_subnets")

    def check(self, address: str | IPAddress) -> Refusal | None:
        """``None`` when the agent may send to ``address``; else why not."""
        # the fixed rules need no host read; only an address they allow costs a netlink dump
        early = judge(address, allow_loopback=self.allow_loopback,
                      host=HostAddresses())
        if early is not None:
            return early
        if self.allow_loopback is ALLOW_LOOPBACK_FOR_TESTS and _is_loopback(address) and \
                not self.site_subnets and not self.portal_subnets:
            return None
        return judge(address, site_subnets=self.site_subnets,
                     portal_subnets=self.portal_subnets, host=self.host_addresses(),
                     allow_loopback=self.allow_loopback)

    def narrowed(self, portal_subnets: tuple[IPNetwork, ...]) -> AddressPolicy:
        """This policy, further confined to the portal's site subnets for the installation
        (the intersection with ``site_subnets``; an empty tuple adds no limit)."""
        return replace(self, portal_subnets=tuple(portal_subnets))

    def narrowed_by(self, payload: Mapping[str, object]) -> AddressPolicy:
        """:meth:`narrowed` by a command payload's ``site_subnets`` (see
        :func:`parse_portal_subnets`; raises :class:`SiteSubnetError` on a malformed list)."""
        return self.narrowed(parse_portal_subnets(payload.get("site_subnets")))


def _is_loopback(address: str | IPAddress) -> bool:
    try:
        ip = _ip(address) if isinstance(address, str) else address
    except ValueError:
        return False
    return ip.is_loopback
