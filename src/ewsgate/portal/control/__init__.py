"""The portal's side of the control channel: enrolment, the mTLS gRPC server and the hub.

::

    agent ──(server TLS)──▶ --enrol-listen  Enrolment.Enroll(token, CSR) ─▶ certificate
    agent ══(mutual TLS)══▶ --grpc-listen   Control.Connect  ◀══ commands / results ══▶
                                               │
                            ControlServicer ── ControlHub ── ControlRecords ── database
                                               ▲
                    portal services: hub.send_command(installation_id, kind, payload, ...)

* :mod:`.server` — :class:`ControlServer` (both ports, certificate, sweeper) and the servicer.
* :mod:`.hub` — :class:`ControlHub`: live streams, :meth:`ControlHub.send_command`, liveness.
* :mod:`.records` — the database checks (exists, enabled, current certificate) and online state.
* :mod:`.enrolment` — the ``Enroll`` call and the ``<secret>.<ca-pin>`` token format.

See docs/control-channel.md for the protocol, certificate lifetimes and offline semantics.
"""

from ewsgate.pki import compose_enrolment_token
from ewsgate.portal.control.hub import (
    CommandError,
    CommandFailed,
    CommandRefused,
    CommandTimedOut,
    ControlHub,
    HubConfig,
    InstallationOffline,
    Progress,
)
from ewsgate.portal.control.server import SERVER_NAME, ControlServer, ControlServerConfig

__all__ = [
    "SERVER_NAME",
    "CommandError",
    "CommandFailed",
    "CommandRefused",
    "CommandTimedOut",
    "ControlHub",
    "ControlServer",
    "ControlServerConfig",
    "HubConfig",
    "InstallationOffline",
    "Progress",
    "compose_enrolment_token",
]
