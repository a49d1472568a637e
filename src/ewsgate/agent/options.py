"""Flags of ``ewsgate agent …``. Kept free of heavy imports: ``ewsgate --help`` reads it."""

from __future__ import annotations

from ewsgate.config import Option, parse_host_port, parse_path, parse_url

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

ENROLL: list[Option] = [
    Option("portal", "HOST:PORT of the portal's gRPC enrolment port (the portal's "
           "--enrol-listen; it tells the agent where its control server is)",
           parse=parse_host_port, required=True, metavar="HOST:PORT"),
    Option("token", "the one-time enrolment token from the portal (<secret>.<ca-pin>)",
           required=True),
    DATA_DIR,
    PROXY,
]

RUN: list[Option] = [
    DATA_DIR,
    PROXY,
    REVERIFY_AFTER,
]
