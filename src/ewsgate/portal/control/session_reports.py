"""An installation's report that it ended a session itself (``SessionFailed``).

The agent re-verifies a session's device on every tunnel reconnect and before a device
connection once its last check is stale (:mod:`ewsgate.agent.device_gate`). When that check
fails, the agent ends the tunnel and sends ``SessionFailed{session_id, code, detail}`` on its
control stream. :class:`SessionReports` then fails the session — a conditional ``UPDATE`` from
a live status to ``failed`` with ``"<code>: <detail>"`` as the reason, only for a session whose
device belongs to the reporting installation (one installation cannot end another's sessions)
— and, for a pin mismatch, records it on the device's pin history. The session service's
sweeper does the rest, keyed on the database as for any session ended elsewhere: it finishes
the job (``failed``, the reason as its error) and sends ``CloseSession``.

Text from the agent is capped before it is stored.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import select, update

from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import Device, RemoteSession

__all__ = ["SessionReports"]

log = logging.getLogger(__name__)

_LIVE = ("verifying", "connecting", "ready")


class SessionReports:
    """Applies installations' ``SessionFailed`` reports to the database."""

    def __init__(self, database: Database, clock: Callable[[], dt.datetime]) -> None:
        self.database = database
        self.clock = clock

    async def session_failed(self, installation_id: int, session_id: str, code: str,
                             detail: str) -> bool:
        """Fail ``session_id`` if it is live and on a device of ``installation_id``; True when
        it was."""
        code = "".join(c for c in code[:64] if c.isalnum() or c in "_.-") or "device_failed"
        reason = f"{code}: {detail[:2000]}"
        now = self.clock()
        async with self.database.transaction() as session:
            devices = select(Device.id).where(Device.installation_id == installation_id)
            result = await session.execute(
                update(RemoteSession)
                .where(RemoteSession.id == session_id[:64],
                       RemoteSession.status.in_(_LIVE),
                       RemoteSession.device_id.in_(devices))
                .values(status="failed", reason=reason, ended_at=now)
                .execution_options(synchronize_session=False))
            applied = bool(result.rowcount)  # type: ignore[attr-defined]
            if applied and code in ("cert_pin_mismatch", "mac_pin_mismatch"):
                from ewsgate.portal.services.device_pins import record_check

                row = await session.get(RemoteSession, session_id)
                device = await session.get(Device, row.device_id) if row and row.device_id \
                    else None
                if device is not None:
                    await record_check(session, device, {"result": "mismatch", "code": code,
                                                         "detail": reason}, clock=self.clock)
        if applied:
            log.warning("installation %s ended session %s: %s", installation_id, session_id,
                        reason[:300])
        else:
            log.info("installation %s reported session %s failed, but it is not a live session "
                     "of its devices; ignored", installation_id, session_id[:64])
        return applied
