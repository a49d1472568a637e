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
    Option("snmp-community", "SNMP v2c read community (default public; empty turns v2c off)",
           metavar="COMMUNITY"),
    Option("snmp-v3-user", "SNMP v3 user name (USM); with keys below for authPriv",
           metavar="USER"),
    Option("snmp-v3-auth-key", "SNMP v3 authentication pass phrase (8+ characters)",
           metavar="KEY"),
    Option("snmp-v3-priv-key", "SNMP v3 privacy pass phrase (8+ characters)", metavar="KEY"),
    Option("snmp-v3-auth-protocol", "SNMP v3 auth protocol: MD5, SHA (default), SHA224, "
           "SHA256, SHA384, SHA512", metavar="PROTO"),
    Option("snmp-v3-priv-protocol", "SNMP v3 privacy protocol: DES, AES (default), AES192, "
           "AES256", metavar="PROTO"),
    Option("snmp-if-index", "ifIndex of the device's Ethernet port in IF-MIB (default: the "
           "vendor's; 1 is the loopback)", parse=parse_positive_int, metavar="N"),
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
