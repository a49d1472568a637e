"""Flags of ``ewsgate relay``. Kept free of heavy imports: ``ewsgate --help`` reads it."""

from __future__ import annotations

from ewsgate.config import Option, parse_host_port, parse_path, parse_url

__all__ = ["RELAY"]

RELAY: list[Option] = [
    Option("listen", "HOST:PORT for browser HTTPS (the per-session origins)",
           parse=parse_host_port, default=parse_host_port("127.0.0.1:8443"), metavar="HOST:PORT"),
    Option("tunnel-listen", "HOST:PORT for agent tunnels (TLS 1.3, client certificates)",
           parse=parse_host_port, default=parse_host_port("127.0.0.1:8444"), metavar="HOST:PORT"),
    Option("domain", "session hosts are s-<id>.DOMAIN", default="rt.localhost", metavar="DOMAIN"),
    Option("portal-url", "the portal's URL (OAuth, JWKS, log shipping)", parse=parse_url,
           required=True, metavar="URL"),
    Option("data-dir", "directory for the relay's credentials, certificates and local log spool",
           parse=parse_path, default=parse_path("./data/relay"), metavar="DIR"),
]
