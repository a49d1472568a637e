"""Flags of ``ewsgate relay``. Kept free of heavy imports: ``ewsgate --help`` reads it."""

from __future__ import annotations

from ewsgate.config import (
    Option,
    parse_duration,
    parse_host_port,
    parse_path,
    parse_positive_int,
    parse_url,
)

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
    Option("relay-id", "this relay's id, as `ewsgate admin create-relay` printed it "
           "(default: relay_id in DATA_DIR/relay.json)", metavar="ID"),
    Option("relay-secret", "this relay's secret, as `ewsgate admin create-relay` printed it "
           "(default: relay_secret in DATA_DIR/relay.json)", metavar="SECRET"),
    Option("tls-cert", "PEM certificate (chain) for browsers: a wildcard for *.DOMAIN "
           "(default DATA_DIR/browser-cert.pem)", parse=parse_path, metavar="FILE"),
    Option("tls-key", "PEM private key of --tls-cert (default DATA_DIR/browser-key.pem)",
           parse=parse_path, metavar="FILE"),
    Option("tunnel-cert", "PEM certificate for the agent tunnel listener "
           "(default DATA_DIR/tunnel-cert.pem)", parse=parse_path, metavar="FILE"),
    Option("tunnel-key", "PEM private key of --tunnel-cert (default DATA_DIR/tunnel-key.pem)",
           parse=parse_path, metavar="FILE"),
    Option("client-ca", "the portal's CA certificate: agents' client certificates must chain to "
           "it (default DATA_DIR/ca.pem)", parse=parse_path, metavar="FILE"),
    Option("portal-ca", "CA file to trust for the portal's HTTPS (default: the system's; "
           "DATA_DIR/ca.pem when it exists)", parse=parse_path, metavar="FILE"),
    Option("public-port", "the port browsers reach the session hosts on, written into session "
           "URLs when not 443 (default: the --listen port)", parse=parse_positive_int,
           metavar="PORT"),
    Option("max-session", "longest a session may last on this relay, at most 30m",
           parse=parse_duration, default=1800.0, metavar="DURATION"),
    Option("header-timeout", "time a browser has to send a whole request head (slow clients)",
           parse=parse_duration, default=10.0, metavar="DURATION"),
    Option("body-timeout", "longest pause allowed in a request or response body (firmware "
           "uploads)", parse=parse_duration, default=300.0, metavar="DURATION"),
    Option("portal-unreachable-after", "after this long without word from the portal's "
           "revocation stream, refuse new tunnels and sign-ins (live sessions run to their "
           "expiry)", parse=parse_duration, default=30.0, metavar="DURATION"),
    Option("response-timeout", "longest wait for a device's response head after the request "
           "was sent (then 504)", parse=parse_duration, default=60.0, metavar="DURATION"),
    Option("log-fsync-interval", "how often the access-log spool is fsync'd: entries survive "
           "kill -9 at once, a power cut after this long; 0 syncs every entry before its "
           "response is delivered", parse=parse_duration, default=0.2, metavar="DURATION"),
    Option("drain-timeout", "on SIGTERM the relay drains: no new sessions, live ones run to "
           "their end or this long, then end with the clear page (a second SIGTERM or SIGINT "
           "stops at once; 0: no drain, SIGTERM stops at once as for a restart)",
           parse=parse_duration, default=600.0, metavar="DURATION"),
]
