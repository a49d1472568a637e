"""Flags of the portal-side commands (``portal``, ``demo``, ``admin …``, ``db …``).

Kept free of heavy imports: ``ewsgate --help`` reads it.
"""

from __future__ import annotations

from ewsgate.config import (
    Option,
    parse_duration,
    parse_host_port,
    parse_path,
    parse_positive_int,
    parse_url,
)

__all__ = ["CREATE_RELAY", "CREATE_TOKEN", "CREATE_USER", "DATABASE", "DB", "DEMO", "PORTAL",
           "SIGNING_KEYS",
           "parse_broker_url"]


def parse_broker_url(text: str) -> str:
    """``nats://HOST:PORT`` (or ``tls://``), several separated by commas."""
    from urllib.parse import urlsplit

    urls = [part.strip() for part in text.split(",") if part.strip()]
    if not urls:
        raise ValueError("expected nats://HOST:PORT")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("nats", "tls") or not parts.hostname:
            raise ValueError(f"{url!r} is not a nats://HOST:PORT or tls://HOST:PORT URL")
    return ",".join(urls)

DATA_DIR = Option("data-dir", "directory for the portal's CA, signing keys and SQLite database",
                  parse=parse_path, default=parse_path("./data/portal"), metavar="DIR")
DATABASE = Option(
    "database-url",
    "SQLAlchemy URL; default: SQLite in the data directory "
    "(e.g. postgresql+asyncpg://user@127.0.0.1:5432/ewsgate)",
    metavar="URL",
)

PORTAL: list[Option] = [
    Option("listen", "HOST:PORT for the web UI, REST API and OAuth endpoints",
           parse=parse_host_port, default=parse_host_port("127.0.0.1:8000"), metavar="HOST:PORT"),
    Option("grpc-listen", "HOST:PORT for the gRPC control server (mTLS) that agents connect to",
           parse=parse_host_port, default=parse_host_port("127.0.0.1:8001"), metavar="HOST:PORT"),
    Option("enrol-listen", "HOST:PORT for gRPC enrolment (server TLS only; agents without a "
           "certificate yet); default: the --grpc-listen host, port + 1", parse=parse_host_port,
           metavar="HOST:PORT"),
    Option("grpc-advertise", "HOST:PORT agents dial for the control stream, told to them at "
           "enrolment (default: the host they enrolled with, the --grpc-listen port)",
           parse=parse_host_port, metavar="HOST:PORT"),
    Option("connect-rate", "control streams admitted per second (token bucket, bursts of "
           "twice the rate); agents over it are told when to come back, spread at that rate; "
           "0 admits all", parse=float, default=150.0, metavar="PER_SECOND"),
    Option("ca-cert", "the CA certificate (PEM) to load instead of DATA_DIR/ca/ca.crt",
           parse=parse_path, metavar="FILE"),
    Option("ca-key", "the CA private key (PEM) to load instead of DATA_DIR/ca/ca.key",
           parse=parse_path, metavar="FILE"),
    DATA_DIR,
    DATABASE,
    Option("public-url", "the portal's URL as browsers and relays reach it "
           "(default: http://LISTEN)", parse=parse_url, metavar="URL"),
    Option("broker-url", "NATS server(s) that connect the portal's replicas, e.g. "
           "nats://127.0.0.1:4222 (comma-separated for a cluster); omit for a single portal "
           "process", parse=parse_broker_url, metavar="URL"),
    Option("session-lifetime", "how long a portal login lasts at most (e.g. 12h)",
           parse=parse_duration, default="12h", metavar="DURATION"),
    Option("session-idle-timeout", "a portal login ends after this long without use (e.g. 2h)",
           parse=parse_duration, default="2h", metavar="DURATION"),
    Option("remote-session-seconds", "how long a Remote Technician session lasts (1 to 1800; "
           "30 minutes is the ceiling and cannot be raised)", parse=parse_positive_int,
           default=1800, metavar="SECONDS"),
    Option("smtp-url", "SMTP server for notification e-mails: smtps://user:pass@host:465, "
           "smtp://user:pass@host:587 (STARTTLS, required) or smtp://host:25?starttls=off",
           metavar="URL"),
    Option("smtp-from", "the From: address of notification e-mails", metavar="ADDRESS"),
    Option("webhook-allow-network", "networks (CIDR, comma-separated) besides public "
           "addresses that webhooks may be sent to, e.g. 10.20.0.0/16 for an internal "
           "receiver", metavar="CIDR[,CIDR]"),
]

DEMO: list[Option] = [
    Option("data-dir", "directory for everything the demo creates (CA, database, demo.json)",
           parse=parse_path, default=parse_path("./demo-data"), metavar="DIR"),
    Option("base-port", "first of the consecutive loopback ports the demo opens",
           parse=parse_positive_int, default=18000, metavar="N"),
]

CREATE_USER: list[Option] = [
    Option("email", "the user's e-mail address (their login)", required=True),
    Option("password", "the user's password (at least 8 characters)", required=True),
    Option("role", "administrator, configurer, user, viewer or approver", default="viewer"),
    Option("scope", "customer id the role is limited to (omit: the whole dealer)",
           metavar="CUSTOMER_ID"),
    Option("name", "display name (default: the e-mail address)"),
    DATA_DIR,
    DATABASE,
]

CREATE_TOKEN: list[Option] = [
    Option("email", "the user whose personal API token to create", required=True),
    Option("token-name", "a label for the token", default="cli"),
    DATA_DIR,
    DATABASE,
]

CREATE_RELAY: list[Option] = [
    Option("name", "the relay node's name", required=True),
    Option("public-domain", "domain under which this relay serves session hosts "
           "(s-<id>.DOMAIN), e.g. rt.example.com", required=True, metavar="DOMAIN"),
    Option("tunnel-url", "HOST:PORT where agents reach this relay's tunnel listener",
           parse=parse_host_port, metavar="HOST:PORT"),
    Option("public-port", "HTTPS port of the session hosts when it is not 443",
           parse=parse_positive_int, metavar="PORT"),
    DATA_DIR,
    DATABASE,
]

DB: list[Option] = [DATA_DIR, DATABASE]

SIGNING_KEYS: list[Option] = [
    Option("rotate", "make a new signing key active (the old ones stay published)",
           switch=True),
    Option("retire", "stop publishing this key id (30 minutes after a rotation at the earliest); "
           "write --retire=KID, since a key id may begin with '-'",
           metavar="KID"),
    DATA_DIR,
    DATABASE,
]
