"""ewsgate: Remote Technician for printer fleets.

A technician opens a device's embedded web server (EWS) in their own browser, from anywhere,
through an on-site agent that only ever dials out. The parts:

    browser ──HTTPS──▶ relay ◀──TLS tunnel── agent ──HTTP(S)──▶ device
                         ▲                      │
                         └── portal (OAuth, CA, jobs) ◀── gRPC mTLS control stream

See docs/architecture.md for the whole picture.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
