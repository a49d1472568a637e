"""What the control server reads and writes in the portal's database.

The control server decides who is on a stream from the client certificate alone, then asks this
module whether that certificate is still good:

* the installation named in the certificate exists and is enabled, and
* the certificate's serial is the installation's current one (``Installation.cert_serial``).

A renewed certificate is *adopted on first use*: renewal signs a new certificate but leaves the
recorded serial alone, and the first stream that presents a certificate of the same installation
that expires later than the recorded one makes it current. From then on the older certificate
is refused. So a renewal whose answer was lost on the way to the agent never locks the agent
out, and re-enrolment (a later certificate) revokes the earlier one.

Online state: ``online`` and ``last_seen_at`` are written when a stream starts and ends, and the
hub refreshes ``last_seen_at`` of every live stream in batches. Rows marked online whose
``last_seen_at`` is older than the stale limit are marked offline by :meth:`mark_stale_offline`,
which also repairs rows left online by a portal process that died.

Commands: ``control_commands`` keeps a command's payload and result with their secrets taken
out (:mod:`.redaction`); finished rows are deleted after a retention (:mod:`.retention`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from ewsgate.portal.control.redaction import redact
from ewsgate.portal.services.errors import NotFound
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import ControlCommand, Installation

__all__ = ["ControlRecords", "Refusal", "StreamGrant"]

_CHUNK = 500
#: how long stream-start checks are collected before one query answers them all
_BATCH_DELAY = 0.005
#: an expiry earlier than any real one: a live stream is never "newer" and so never adopts
_FLOOR = dt.datetime.min.replace(tzinfo=dt.UTC)


class Refusal(Exception):
    """The certificate may not open or keep a stream. ``code`` is stable; ``status`` is the gRPC
    status name to end the stream with."""

    def __init__(self, code: str, status: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class StreamGrant:
    """The outcome of a successful check: who, and the certificate that is now current."""

    installation_id: int
    cert_serial: str
    adopted: bool


def _check(installation: Any, installation_id: int, cert_serial: str,
           cert_not_after: dt.datetime) -> bool:
    """True when the certificate should be adopted as the installation's current one.

    ``installation`` is an Installation or a row with its ``enabled``, ``cert_serial`` and
    ``cert_not_after``; None when it does not exist.
    """
    if installation is None:
        raise Refusal("installation_deleted", "PERMISSION_DENIED",
                      f"installation {installation_id} no longer exists; its certificate is "
                      "revoked. Create a new installation and enrol again")
    if not installation.enabled:
        raise Refusal("installation_disabled", "PERMISSION_DENIED",
                      f"installation {installation_id} is disabled; enable it in the portal")
    if installation.cert_serial == cert_serial:
        return False
    recorded = installation.cert_not_after
    if installation.cert_serial is not None and recorded is not None and cert_not_after > recorded:
        return True
    raise Refusal("certificate_superseded", "UNAUTHENTICATED",
                  f"certificate {cert_serial} is not installation {installation_id}'s current "
                  "certificate (it was replaced by a renewal or a new enrolment); enrol again "
                  "if this agent has no newer certificate")


class ControlRecords:
    """Database access for the control server (one instance per portal process)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        #: (installation id, serial, not after, x5t#S256 or None, the answer)
        self._waiting: list[tuple[int, str, dt.datetime, str | None,
                                  asyncio.Future[StreamGrant]]] = []

    async def authorize(self, installation_id: int, cert_serial: str,
                        cert_not_after: dt.datetime, *,
                        thumbprint: str | None = None) -> StreamGrant:
        """Check a certificate at stream start (may adopt a renewed one); raise :class:`Refusal`.

        Checks that arrive together (a reconnect storm) share one query: they are collected
        for a few milliseconds and answered from one ``SELECT … WHERE id IN (…)``.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StreamGrant] = loop.create_future()
        self._waiting.append((installation_id, cert_serial, cert_not_after, thumbprint, future))
        if len(self._waiting) == 1:
            loop.call_later(_BATCH_DELAY, lambda: asyncio.ensure_future(self._authorize_batch()))
        return await future

    async def _authorize_batch(self) -> None:
        batch, self._waiting = self._waiting[:_CHUNK], self._waiting[_CHUNK:]
        if self._waiting:
            asyncio.get_running_loop().call_soon(
                lambda: asyncio.ensure_future(self._authorize_batch()))
        try:
            async with self.database.transaction() as session:
                ids = sorted({item[0] for item in batch})
                result = await session.execute(
                    select(Installation.id, Installation.enabled, Installation.cert_serial,
                           Installation.cert_not_after, Installation.cert_thumbprint)
                    .where(Installation.id.in_(ids)))
                rows: dict[int, Any] = {row.id: row for row in result.all()}
                outcomes: list[StreamGrant | Refusal] = []
                for installation_id, serial, not_after, thumb, _future in batch:
                    try:
                        adopt = _check(rows.get(installation_id), installation_id, serial,
                                       not_after)
                    except Refusal as refusal:
                        outcomes.append(refusal)
                        continue
                    if adopt:  # later checks in this batch see the adopted certificate
                        rows[installation_id] = SimpleNamespace(
                            enabled=True, cert_serial=serial, cert_not_after=not_after,
                            cert_thumbprint=thumb)
                        await session.execute(
                            update(Installation).where(Installation.id == installation_id)
                            .values(cert_serial=serial, cert_not_after=not_after,
                                    cert_thumbprint=thumb))
                    elif thumb is not None and rows[installation_id].cert_thumbprint != thumb:
                        # the current certificate, its thumbprint not yet recorded (tunnel
                        # tickets are bound to it)
                        await session.execute(
                            update(Installation).where(Installation.id == installation_id)
                            .values(cert_thumbprint=thumb))
                    outcomes.append(StreamGrant(installation_id, serial, adopt))
        except BaseException as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (*_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, Refusal):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def recheck(self, installation_id: int, cert_serial: str) -> dt.datetime | None:
        """Check a live stream's certificate again (no adoption); raises :class:`Refusal`.

        Returns the recorded expiry of the installation's current certificate.
        """
        async with self.database.transaction() as session:
            installation = await session.get(Installation, installation_id)
            _check(installation, installation_id, cert_serial, _FLOOR)
            assert installation is not None
            return installation.cert_not_after

    async def refused_among(self, streams: Mapping[int, str]) -> dict[int, Refusal]:
        """For many live streams ``{installation_id: cert_serial}`` at once: those now refused."""
        refused: dict[int, Refusal] = {}
        ids = list(streams)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            async with self.database.transaction() as session:
                result = await session.execute(
                    select(Installation.id, Installation.enabled, Installation.cert_serial,
                           Installation.cert_not_after).where(Installation.id.in_(chunk)))
                rows = {row.id: row for row in result.all()}
            for installation_id in chunk:
                try:
                    _check(rows.get(installation_id), installation_id, streams[installation_id],
                           _FLOOR)
                except Refusal as refusal:
                    refused[installation_id] = refusal
        return refused

    async def apply_presence(self, changes: Mapping[int, tuple[bool, str | None, dt.datetime]],
                             ) -> None:
        """Write many online/offline changes ``{id: (online, agent_version, at)}`` at once."""
        rows = []
        for installation_id, (online, version, at) in changes.items():
            row: dict[str, Any] = {"id": installation_id, "online": online, "last_seen_at": at}
            if version:
                row["agent_version"] = version[:64]
            rows.append(row)
        # rows with and without agent_version must not share one executemany batch
        for group in ([r for r in rows if "agent_version" in r],
                      [r for r in rows if "agent_version" not in r]):
            for start in range(0, len(group), _CHUNK):
                async with self.database.transaction() as session:
                    await session.execute(update(Installation), group[start:start + _CHUNK])

    async def touch(self, installation_ids: Iterable[int], now: dt.datetime) -> None:
        """Refresh ``last_seen_at`` (and ``online``) of live streams, in batches."""
        ids = sorted(set(installation_ids))
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            async with self.database.transaction() as session:
                await session.execute(update(Installation).where(Installation.id.in_(chunk))
                                      .values(online=True, last_seen_at=now))

    async def mark_stale_offline(self, older_than: dt.datetime) -> None:
        """Mark offline every installation marked online but not seen since ``older_than``."""
        async with self.database.transaction() as session:
            await session.execute(update(Installation).where(
                Installation.online.is_(True),
                (Installation.last_seen_at.is_(None)) | (Installation.last_seen_at < older_than))
                .values(online=False))

    async def record_command(self, command_id: str, installation_id: int, kind: str,
                             payload: dict[str, Any], now: dt.datetime) -> None:
        try:
            async with self.database.transaction() as session:
                if await session.get(Installation, installation_id) is None:
                    raise NotFound.of("installation", installation_id)
                session.add(ControlCommand(id=command_id, installation_id=installation_id,
                                           kind=kind, created_at=now, status="pending",
                                           payload=redact(payload)))
        except IntegrityError:  # deleted between the check and the insert
            raise NotFound.of("installation", installation_id) from None

    async def finish_command(self, command_id: str, status: str,
                             result: dict[str, Any] | None, now: dt.datetime) -> None:
        async with self.database.transaction() as session:
            await session.execute(update(ControlCommand).where(ControlCommand.id == command_id)
                                  .values(status=status, result=redact(result),
                                          completed_at=now))

    async def prune_commands(self, older_than: dt.datetime, *, batch: int = 5000) -> int:
        """Delete finished commands completed before ``older_than``; the number deleted."""
        removed = 0
        while True:
            async with self.database.transaction() as session:
                ids = list((await session.scalars(
                    select(ControlCommand.id).where(
                        ControlCommand.completed_at.is_not(None),
                        ControlCommand.completed_at < older_than,
                        ControlCommand.status.not_in(("pending", "sent")))
                    .limit(batch))).all())
                if ids:
                    await session.execute(delete(ControlCommand)
                                          .where(ControlCommand.id.in_(ids)))
            removed += len(ids)
            if len(ids) < batch:
                return removed

    async def set_command_status(self, command_id: str, status: str) -> None:
        async with self.database.transaction() as session:
            await session.execute(update(ControlCommand).where(ControlCommand.id == command_id)
                                  .values(status=status))
