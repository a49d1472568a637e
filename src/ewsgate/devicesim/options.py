"""Flags of ``ewsgate devicesim``. Kept free of heavy imports: ``ewsgate --help`` reads it."""

from __future__ import annotations

from ewsgate.config import (
    Option,
    parse_duration,
    parse_host_port,
    parse_path,
    parse_positive_int,
)

__all__ = ["DEVICESIM"]

DEVICESIM: list[Option] = [
    Option("profile", "which printer to simulate (see docs/devicesim.md for the list)",
           default="hp", metavar="NAME"),
    Option("http", "HOST:PORT for the EWS over HTTP", parse=parse_host_port, metavar="HOST:PORT"),
    Option("https", "HOST:PORT for the EWS over HTTPS", parse=parse_host_port,
           metavar="HOST:PORT"),
    Option("snmp", "HOST:PORT (UDP) for the SNMP agent", parse=parse_host_port,
           metavar="HOST:PORT"),
    Option("mac", "the MAC address the device reports, e.g. a0:d3:c1:4a:2b:3c"),
    Option("serial", "the serial number the device reports"),
    Option("advertised-host", "the address the device believes it has, written into its "
           "absolute URLs, redirects and cookie domains (default: the --http host)",
           metavar="HOST"),
    Option("hostname", "the device's own host name (default: vendor prefix + end of the MAC)",
           metavar="NAME"),
    Option("tls-cert", "PEM certificate for --https (default: a self-signed one made at start)",
           parse=parse_path, metavar="FILE"),
    Option("tls-key", "PEM private key for --tls-cert", parse=parse_path, metavar="FILE"),
    Option("slow-seconds", "seconds to first byte of the legacyhttp profile's slow page",
           parse=parse_duration, default=3.0, metavar="SECONDS"),
    Option("large-log-mb", "size of the large log download in MiB", parse=parse_positive_int,
           default=200, metavar="MB"),
    Option("admin-idle-seconds", "idle time before the konica profile's admin auto-logout",
           parse=parse_duration, default=600.0, metavar="SECONDS"),
]
