"""Flags of ``ewsgate devicesim``. Kept free of heavy imports: ``ewsgate --help`` reads it."""

from __future__ import annotations

from ewsgate.config import Option, parse_host_port

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
]
