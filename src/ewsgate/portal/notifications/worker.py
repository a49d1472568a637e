"""The background service that drains the notification outbox.

::

    loop every poll_interval (or at once when woken):
      claim ≤ batch due rows   (short transaction, SKIP LOCKED on PostgreSQL)
      deliver them             (concurrently, each with its own timeout; no transaction open)
      record each outcome      (delivered / pending + backoff / failed)

Every portal replica runs one; the claim keeps them apart. A crash between claim and record
leaves a ``sending`` row whose lease runs out and which another pass sends again (at least
once). Failures are logged (WARNING with the notification id, kind, target and reason; ERROR
when a delivery gives up) and counted in :attr:`NotificationWorker.counters`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from ewsgate.portal.notifications.outbox import (
    Claimed,
    RetryPolicy,
    claim,
    prune,
    record_delivered,
    record_failure,
)
from ewsgate.portal.notifications.senders import Outcome, Sender
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import CustomerContacts

__all__ = ["NotificationWorker"]

log = logging.getLogger(__name__)


class NotificationWorker:
    """Delivers due notifications with ``senders`` (``{"email": ..., "webhook": ...}``)."""

    name = "notification worker"

    def __init__(self, db: Database, senders: dict[str, Sender], *,
                 clock: Callable[[], datetime], policy: RetryPolicy | None = None,
                 poll_interval: float = 1.0, batch: int = 20,
                 rng: Callable[[], float] = random.random) -> None:
        self.db = db
        self.senders = senders
        self.policy = policy or RetryPolicy()
        self.poll_interval = poll_interval
        self.batch = batch
        self._clock = clock
        self._rng = rng
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._next_prune: datetime | None = None
        #: ``delivered``, ``retried``, ``failed``, ``lost_lease`` since start
        self.counters: Counter[str] = Counter()

    async def run_once(self) -> int:
        """One pass: claim, deliver, record; how many rows were attempted. Once an hour it
        also deletes old delivered and failed rows (:func:`~.outbox.prune`)."""
        now = self._clock()
        if self._next_prune is None or now >= self._next_prune:
            self._next_prune = now + timedelta(hours=1)
            async with self.db.transaction() as session:
                self.counters["pruned"] += await prune(session, now=now, policy=self.policy)
        async with self.db.transaction() as session:
            items = await claim(session, now=self._clock(), policy=self.policy,
                                channels=tuple(self.senders), limit=self.batch)
        if not items:
            return 0
        outcomes = await asyncio.gather(*(self._deliver(item) for item in items))
        async with self.db.transaction() as session:
            for item, outcome in zip(items, outcomes, strict=True):
                now = self._clock()
                if outcome.delivered:
                    applied = await record_delivered(session, item, now=now)
                    self.counters["delivered" if applied else "lost_lease"] += 1
                    continue
                status = await record_failure(session, item, outcome.error, now=now,
                                              policy=self.policy, permanent=outcome.permanent,
                                              rng=self._rng)
                if status is None:
                    self.counters["lost_lease"] += 1
                elif status == "failed":
                    self.counters["failed"] += 1
                    log.error("notification %d (%s, %s to %s) failed for good after %d "
                              "attempt(s): %s", item.id, item.kind, item.channel, item.target,
                              item.attempts, outcome.error)
                else:
                    self.counters["retried"] += 1
                    log.warning("notification %d (%s, %s to %s) attempt %d failed, will "
                                "retry: %s", item.id, item.kind, item.channel, item.target,
                                item.attempts, outcome.error)
        return len(items)

    async def _deliver(self, item: Claimed) -> Outcome:
        sender = self.senders[item.channel]
        secret = None
        try:
            if item.channel == "webhook":
                async with self.db.transaction() as session:
                    contacts = (await session.get(CustomerContacts, item.source_customer_id)
                                if item.source_customer_id is not None else None)
                    if contacts is not None and contacts.webhook_url == item.target:
                        secret = contacts.webhook_secret
            return await sender.send(item.id, item.kind, item.target, item.payload,
                                     secret=secret)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in a sender must not stop the others
            log.exception("notification %d: the %s sender failed", item.id, item.channel)
            return Outcome(False, f"internal error: {type(exc).__name__}: {exc}")

    def wake(self) -> None:
        """Run a pass now (after a commit that queued notifications)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                while await self.run_once() >= self.batch:
                    pass  # a full batch: more may be due
            except Exception:
                log.exception("notification pass failed; retrying")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            self._wake.clear()

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for sender in self.senders.values():
            close = getattr(sender, "aclose", None)
            if close is not None:
                await close()
