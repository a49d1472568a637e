"""Remote sessions: the lifecycle of *Open device web page*, from the button to expiry.

A session is created for a Remote Technician User on an enabled device in their scope; it gets
an *Open Device Web Page* job, a relay node, a host of its own (``s-<id>.<relay domain>``) and a
tunnel ticket, and the portal sends ``OpenSession`` to the device's installation over the
control stream. The agent's progress moves the session through ``verifying`` → ``connecting``
→ ``ready`` (or ``failed`` with the reason); the owner or an administrator ends it, the device's
Remote Technician switch ends it, and at ``expires_at`` the sweeper ends it. The job follows.

- :mod:`.naming` — ids, hosts, URLs, expiry cap, relay choice (pure).
- :mod:`.status` — the state table (pure).
- :mod:`.service` — create / get / list / end / progress / sweep, over the database and the
  control hub.
- :mod:`.relay_log` — the Remote Technician Log: ingest with dedup, CSV and HAR export.

docs/sessions.md describes the same for operators and for the relay and agent authors.
"""

__all__: list[str] = []
