"""Tunnel reports from agents, recorded on the session's job.

An agent sends ``AgentMessage.tunnel_report`` when a relay misbehaved in one of its sessions
(see :mod:`ewsgate.agent.tunnel_reports` for when, and docs/control-channel.md). The portal:

1. ignores a report whose ``version`` it does not know, or whose kind is not one of
   :data:`KINDS` (logged; the stream lives on: a newer agent must not be cut off);
2. limits each installation to ``burst`` reports at once and ``per_second`` after that
   (a stolen or broken installation must not fill the database); what it drops it counts,
   and says so in the log;
3. accepts a report only for a session whose device belongs to the installation on the
   stream (identity comes from the certificate, never from the message);
4. stores it in ``tunnel_reports`` (job, session, kind, code, budget, count, detail) with the
   text cleaned and capped again -- the agent's sentences are a peer's text here;
5. on ``relay_cut`` (the agent ended the session's tunnel for good) moves a live session to
   ``failed`` with the agent's reason, by the session state table (a conditional ``UPDATE …
   WHERE status IN (verifying, connecting, ready)``); the Remote Technician sweep then fails
   the job with that reason and sends ``CloseSession``, as for any failed session.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.sessions.status import LIVE
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import Device, Job, RemoteSession, TunnelReport
from ewsgate.proto import control_pb2 as pb

__all__ = ["KINDS", "TunnelReportSink"]

log = logging.getLogger(__name__)

KINDS = frozenset({"destination_refused", "stream_refused", "protocol_violation", "relay_cut"})
_MAX_DETAIL = 400
_MAX_WORD = 32


def _clean(text: str, limit: int) -> str:
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[:limit + 1])
    return cleaned if len(cleaned) <= limit else cleaned[:limit - 1] + "…"


class _Bucket:
    __slots__ = ("at", "dropped", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at
        self.dropped = 0


class TunnelReportSink:
    """Checks, rate-limits and stores tunnel reports (one per portal process)."""

    def __init__(self, database: Database, *, clock: Callable[[], dt.datetime],
                 monotonic: Callable[[], float], burst: int = 20,
                 per_second: float = 1.0) -> None:
        self.database = database
        self.clock = clock
        self.monotonic = monotonic
        self.burst = burst
        self.per_second = per_second
        self._buckets: dict[int, _Bucket] = {}

    def _allow(self, installation_id: int) -> bool:
        now = self.monotonic()
        bucket = self._buckets.get(installation_id)
        if bucket is None:
            bucket = self._buckets[installation_id] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst),
                            bucket.tokens + (now - bucket.at) * self.per_second)
        bucket.at = now
        if bucket.tokens < 1.0:
            bucket.dropped += 1
            if bucket.dropped in (1, 10, 100) or bucket.dropped % 1000 == 0:
                log.warning("installation %s sends tunnel reports faster than %g/s; %d dropped",
                            installation_id, self.per_second, bucket.dropped)
            return False
        bucket.tokens -= 1.0
        return True

    async def _fail_session(self, session: AsyncSession, session_id: str, job_id: int,
                            detail: str) -> None:
        now = self.clock()
        reason = f"relay_cut: {detail}"
        moved = await session.execute(
            update(RemoteSession)
            .where(RemoteSession.id == session_id,
                   RemoteSession.status.in_([status.value for status in LIVE]))
            .values(status="failed", ended_at=now, reason=reason))
        if not moved.rowcount:  # type: ignore[attr-defined]
            return  # already ended or failed: the first outcome stays
        job = await session.get(Job, job_id)
        if job is not None and job.result is not None:
            timeline = {**job.result.get("timeline", {})}
            timeline.setdefault("failed", now.isoformat())
            job.result = {**job.result, "status": "failed", "timeline": timeline,
                          "reason": reason}

    async def record(self, installation_id: int, report: pb.TunnelReport) -> int | None:
        """Store ``report`` on its session's job; the job id, or None when it was ignored."""
        if report.version != 1:
            log.info("installation %s sent a tunnel report of version %d; this portal knows "
                     "version 1 and ignored it", installation_id, report.version)
            return None
        if report.kind not in KINDS or not report.session_id:
            log.info("installation %s sent a tunnel report of unknown kind %r; ignored",
                     installation_id, _clean(report.kind, _MAX_WORD))
            return None
        if not self._allow(installation_id):
            return None
        async with self.database.transaction() as session:
            job_id = await session.scalar(
                select(RemoteSession.job_id)
                .join(Device, Device.id == RemoteSession.device_id)
                .where(RemoteSession.id == report.session_id[:64],
                       Device.installation_id == installation_id))
            if job_id is None:
                log.warning("installation %s reported on session %r, which is not one of its "
                            "sessions; ignored", installation_id,
                            _clean(report.session_id, 64))
                return None
            session.add(TunnelReport(
                job_id=job_id, session_id=report.session_id[:64],
                installation_id=installation_id, at=self.clock(), kind=report.kind,
                code=_clean(report.code, _MAX_WORD) or "UNKNOWN",
                budget=_clean(report.budget, _MAX_WORD) or None,
                count=max(1, min(report.count, 2**31 - 1)),
                detail=_clean(report.detail, _MAX_DETAIL) or None))
            if report.kind == "relay_cut":
                await self._fail_session(session, report.session_id[:64], int(job_id),
                                         _clean(report.detail, _MAX_DETAIL))
        log.warning("session %s (job %s): the agent reports %s %s x%d: %s", report.session_id,
                    job_id, report.kind, _clean(report.code, _MAX_WORD), report.count,
                    _clean(report.detail, _MAX_DETAIL))
        return int(job_id)
