"""One database poll per portal process, fanned out to every connected relay's event stream.

Each relay holds one ``GET /api/v1/relay/events`` stream open on some portal replica. Rather
than each stream reading the database, the replica runs one poller while at least one stream
is open: every :data:`POLL` seconds it reads what ended or was revoked since its previous read
(:func:`~ewsgate.portal.sessions.revocation.all_changes`, the ``ended_at`` index) and puts each
relay's share on the queue of every stream of that relay. So the database sees four small
queries a second per replica, whatever the number of relays::

    poller (one per replica) ──all_changes──▶ {relay id: [SessionRevoked...]} + [Installation...]
        └─▶ queue of each subscribed stream ─▶ SSE ─▶ relay

A stream whose relay does not read (its queue is full) is ended; the relay reconnects and
reconciles against a fresh snapshot, so nothing is lost. The poller stops with the last
stream. Another replica's writes are seen like this replica's own: the database is the only
source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from ewsgate.portal.sessions.revocation import all_changes
from ewsgate.portal.store.db import Database
from ewsgate.revocations import InstallationRevoked, SessionRevoked

__all__ = ["POLL", "QUEUE_LIMIT", "RevocationStreams", "StreamLagging"]

log = logging.getLogger(__name__)

#: seconds between two reads of the database
POLL = 0.25
#: batches a stream may fall behind before it is ended (the relay then reconnects)
QUEUE_LIMIT = 256

Batch = list[SessionRevoked | InstallationRevoked]


class StreamLagging(Exception):
    """The relay did not read its stream fast enough; end it (the relay reconnects)."""


class _Subscription:
    def __init__(self, relay_id: int) -> None:
        self.relay_id = relay_id
        self.queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=QUEUE_LIMIT)

    async def next(self, within: float) -> Batch:
        """The next batch, ``[]`` after ``within`` quiet seconds; :class:`StreamLagging` if
        this stream fell too far behind."""
        try:
            batch = await asyncio.wait_for(self.queue.get(), within)
        except TimeoutError:
            return []
        if batch is None:
            raise StreamLagging("the relay fell behind its event stream")
        return batch

    def offer(self, batch: Batch) -> None:
        try:
            self.queue.put_nowait(batch)
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(None)  # marks the stream as lagging


class RevocationStreams:
    """The replica's poller and its subscribers (one instance per portal process)."""

    def __init__(self, db: Database, clock: Callable[[], datetime], *,
                 poll: float = POLL) -> None:
        self.db = db
        self.clock = clock
        self.poll = poll
        self._subscribers: set[_Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        #: database reads done (for tests and the log)
        self.polls = 0

    @contextlib.asynccontextmanager
    async def subscribe(self, relay_id: int) -> AsyncIterator[_Subscription]:
        """Receive ``relay_id``'s batches while inside the block."""
        subscription = _Subscription(relay_id)
        self._subscribers.add(subscription)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)
            if not self._subscribers and self._task is not None:
                self._task.cancel()
                self._task = None

    async def _run(self) -> None:
        since = self.clock()
        while self._subscribers:
            now = self.clock()
            try:
                async with self.db.transaction() as session:
                    sessions, installations = await all_changes(session, since, now)
                since = now
                self.polls += 1
            except Exception:
                log.exception("reading revocations for the relays failed; retrying")
            else:
                for subscription in list(self._subscribers):
                    batch: Batch = [*sessions.get(subscription.relay_id, ()), *installations]
                    if batch:
                        subscription.offer(batch)
            await asyncio.sleep(self.poll)
