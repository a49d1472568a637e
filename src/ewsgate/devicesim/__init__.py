"""The simulated printer: an embedded web server with real printers' quirks, and an SNMP agent.

One process (``ewsgate devicesim``) or one call (:func:`ewsgate.devicesim.device.start_device`)
runs one printer::

    --http / --https ─▶ ews_server (asyncio + h11 + wsproto) ─▶ profiles/<name>.py ─▶ state
    --snmp           ─▶ snmp_agent (pysnmp) ─▶ mib (the vendor's OIDs: serial, MAC, model)

Each profile reproduces one behaviour reported from the field (HTTPS enforcement, legacy TLS,
frames and JavaScript logins, HTTP Digest, absolute URLs, a WebSocket front panel, a single
admin session, HTTP/1.0 and chunked framing quirks) around the pages a technician uses: status,
settings, firmware upload (streamed into a SHA-256) and logs. docs/devicesim.md lists them with
their sources.
"""
