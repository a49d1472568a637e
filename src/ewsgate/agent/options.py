"""Flags of ``ewsgate agent …``. Kept free of heavy imports: ``ewsgate --help`` reads it."""

from __future__ import annotations

from ewsgate.agent.address_policy import parse_site_subnets
from ewsgate.config import (
    HostPort,
    Option,
    parse_host_port,
    parse_path,
    parse_positive_int,
    parse_url,
)

REVERIFY_AFTER = Option("reverify-after", "seconds after which a session's device is checked "
                        "again before a new device connection (it is always checked again on "
                        "a tunnel reconnect); 1 to 3600", parse=float, default=300.0,
                        metavar="SECONDS")

__all__ = ["ENROLL", "RUN"]

DATA_DIR = Option("data-dir", "directory for the installation's key, certificate and state",
                  parse=parse_path, default=parse_path("./data/agent"), metavar="DIR")

PROXY = Option("proxy", "HTTP CONNECT proxy for outbound connections, e.g. "
               "http://user:pass@proxy:3128 (default: HTTPS_PROXY)", parse=parse_url,
               metavar="URL")

def parse_host_ports(text: str) -> tuple[HostPort, ...]:
    """``HOST:PORT[,HOST:PORT...]`` → the addresses, in order."""
    found = tuple(parse_host_port(part) for part in text.split(",") if part.strip())
    if not found:
        raise ValueError("expected HOST:PORT[,HOST:PORT...]")
    return found


PORTAL_ADDRESSES = Option(
    "portal-addresses", "every portal replica's control address, comma-separated (names may "
    "resolve to several); the agent dials them in turn and moves to the next when its replica "
    "dies. Saved in the data directory (default: the address from enrolment)",
    parse=parse_host_ports, metavar="HOST:PORT,...")

ENROLL: list[Option] = [
    Option("portal", "HOST:PORT of the portal's gRPC enrolment port (the portal's "
           "--enrol-listen; it tells the agent where its control server is)",
           parse=parse_host_port, required=True, metavar="HOST:PORT"),
    Option("token", "the one-time enrolment token from the portal (<secret>.<ca-pin>)",
           required=True),
    DATA_DIR,
    PROXY,
    PORTAL_ADDRESSES,
]

SITE_SUBNETS = Option("site-subnets", "the site's device subnets, comma-separated (e.g. "
                      "10.20.0.0/24,2001:db8:5::/64); when set, the agent sends nothing -- no "
                      "SNMP, no ARP priming, no TCP -- to an address outside them (default: "
                      "any address the address policy allows)", parse=parse_site_subnets,
                      metavar="CIDR,...")
MAX_DEVICE_CONNECTIONS = Option(
    "max-device-connections", "device connections one Remote Technician session may hold at "
    "once; the relay's streams beyond it are refused (REFUSED_STREAM) and reported to the "
    "portal", parse=parse_positive_int, default=32, metavar="N")

RUN: list[Option] = [
    DATA_DIR,
    PORTAL_ADDRESSES,
    PROXY,
    SITE_SUBNETS,
    MAX_DEVICE_CONNECTIONS,
    REVERIFY_AFTER,
]
