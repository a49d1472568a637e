"""Relay liveness: heartbeats, placement on live relays only, and the sweep of lost relays.

Each relay ``POST``s ``/api/v1/relay/heartbeat`` every :data:`HEARTBEAT_INTERVAL` seconds with
its state; the portal writes it to the relay's row, so every replica (and the one that runs
the sweep) judges liveness from the database, not from which replica holds which stream::

    state of a relay row            (now - heartbeat_at <= timeout)   (> timeout)
    ──────────────────────────────  ───────────────────────────────  ────────────
    heartbeat_at NULL               legacy: placed only when no live relay heartbeats
    relay_state "serving"           ALIVE    → placeable             LOST
    relay_state "draining"          DRAINING → not placeable         LOST
    relay_state "stopped"           STOPPED  → not placeable         STOPPED

- **Placement** (:func:`placeable`): a session goes to an ALIVE relay; only if there is none,
  to a legacy relay (a relay of the version before heartbeats, during a rolling upgrade).
  Draining, stopped and lost relays get nothing new.
- **Lost relay** (:func:`sweep_lost_relays`): a relay whose heartbeat is older than the timeout
  takes its live sessions to ``failed`` with the reason on the job. Exactly one replica runs a
  pass: on PostgreSQL it holds a transaction-level advisory lock (``pg_try_advisory_xact_lock``)
  for the pass, the others skip it; each status write is still the conditional ``UPDATE`` of
  :mod:`.status`, so even two passes could not fail a session twice.
- **Stopped relay**: a relay that drained and exits says ``stopped``; its sessions that are
  still live end (``ended``, a planned end, not a failure) at once.

Why a heartbeat request and not the revocation stream (``GET /api/v1/relay/events``) itself:
the stream is held by one replica's memory and reopened every few minutes, so liveness read
from it would need that replica to write "still connected" for it, and a replica's restart would
make every relay it held look dead; the stream carries nothing from relay to portal (no
draining, no deadline); and a request that the relay's own loop sends proves that loop runs,
where an open TCP stream outlives a wedged process.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.sessions.status import LIVE, SessionStatus
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import Relay, RemoteSession

__all__ = [
    "HEARTBEAT_INTERVAL",
    "HEARTBEAT_TIMEOUT",
    "RELAY_STATES",
    "SWEEP_LOCK_KEY",
    "Liveness",
    "RelayHealthConfig",
    "describe_unplaceable",
    "liveness",
    "lost_reason",
    "placeable",
    "record_heartbeat",
    "stopped_reason",
    "sweep_lost_relays",
]

log = logging.getLogger(__name__)

#: how often a relay heartbeats (the portal tells the relay in its answer)
HEARTBEAT_INTERVAL = 5.0
#: a relay silent for longer than this is lost: six missed heartbeats, the relay's own
#: ``--portal-unreachable-after`` default, and room for a relay restarted in place (a crash and
#: its supervisor's restart, an upgrade with ``--drain-timeout 0``) to come back before its
#: sessions are failed
HEARTBEAT_TIMEOUT = 30.0
#: what a heartbeat may say
RELAY_STATES = ("serving", "draining", "stopped")
#: the advisory-lock key of the lost-relay sweep (ASCII "ewsgRLAY")
SWEEP_LOCK_KEY = 0x65777367524C4159
_LIVE = tuple(s.value for s in LIVE)


@dataclass(frozen=True)
class RelayHealthConfig:
    """Heartbeat settings, validated once."""

    interval: float = HEARTBEAT_INTERVAL
    timeout: float = HEARTBEAT_TIMEOUT

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError("relay heartbeat interval must be positive")
        if self.timeout < 2 * self.interval:
            raise ValueError(f"relay heartbeat timeout {self.timeout:g}s must be at least "
                             f"twice the interval ({self.interval:g}s), or one late heartbeat "
                             "would fail a healthy relay's sessions")


class Liveness(enum.Enum):
    """What the portal makes of a relay row at a moment."""

    LEGACY = "legacy"
    ALIVE = "alive"
    DRAINING = "draining"
    STOPPED = "stopped"
    LOST = "lost"


def liveness(relay: Relay, now: datetime, timeout: float) -> Liveness:
    """The relay's liveness at ``now`` (see the table at the top)."""
    if relay.heartbeat_at is None:
        return Liveness.LEGACY
    if relay.relay_state == "stopped":
        return Liveness.STOPPED
    if now - relay.heartbeat_at > timedelta(seconds=timeout):
        return Liveness.LOST
    return Liveness.DRAINING if relay.relay_state == "draining" else Liveness.ALIVE


R = TypeVar("R", bound=Relay)


def placeable(relays: Sequence[R], now: datetime, timeout: float) -> list[R]:
    """The relays a new session may go to: the alive ones, else the legacy ones."""
    states = [(r, liveness(r, now, timeout)) for r in relays]
    alive = [r for r, s in states if s is Liveness.ALIVE]
    return alive or [r for r, s in states if s is Liveness.LEGACY]


def describe_unplaceable(relays: Sequence[Relay], now: datetime, timeout: float) -> str:
    """Why no relay can take a session, for the ``no_relay`` error."""
    if not relays:
        return ("no relay node is registered; register one with `ewsgate admin create-relay` "
                "and start it with `ewsgate relay`")
    parts = [f"{r.name!r} is {liveness(r, now, timeout).value}" for r in relays]
    return ("no relay node is alive to take the session (" + ", ".join(parts) + "); start "
            "a relay with `ewsgate relay` or wait for a restarting one, then try again")


def lost_reason(relay: Relay, timeout: float) -> str:
    """The reason written on a session whose relay stopped heartbeating."""
    last = relay.heartbeat_at.isoformat() if relay.heartbeat_at else "never"
    return (f"relay_lost: relay {relay.name!r} (id {relay.id}) sent no heartbeat for more "
            f"than {timeout:g} s (last at {last}), so it is taken to be down; start a new "
            "session, it goes to another relay")


def stopped_reason(relay: Relay) -> str:
    """The reason written on a session still live when its relay finished draining."""
    return (f"relay_drained: relay {relay.name!r} (id {relay.id}) was shut down for "
            "maintenance and ended the session at its drain deadline; start a new session, "
            "it goes to another relay")


async def record_heartbeat(session: AsyncSession, relay: Relay, state: str, now: datetime,
                           drain_deadline: datetime | None = None) -> None:
    """Write a heartbeat on the relay's row (``state`` one of :data:`RELAY_STATES`)."""
    if state not in RELAY_STATES:
        raise ValueError(f"relay state {state!r} is not one of {', '.join(RELAY_STATES)}")
    row = await session.get(Relay, relay.id, with_for_update=False)
    assert row is not None
    row.heartbeat_at = now
    row.last_seen_at = now
    row.relay_state = state
    row.drain_deadline = drain_deadline if state == "draining" else None


Mover = Callable[[str, SessionStatus, str], Awaitable[bool]]


async def _single_runner(session: AsyncSession, dialect: str) -> bool:
    """True if this replica runs the pass (PostgreSQL: it got the advisory lock)."""
    if dialect != "postgresql":
        return True  # SQLite: one process writes the file
    got = await session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"),
                               {"key": SWEEP_LOCK_KEY})
    return bool(got)


async def sweep_lost_relays(db: Database, now: datetime, silence: float, move: Mover) -> int:
    """Fail the live sessions of lost relays and end those of stopped ones; returns how many
    sessions were moved. Skipped (0) while another replica runs the same pass."""
    due: list[tuple[str, SessionStatus, str]] = []
    async with db.transaction() as session:
        if not await _single_runner(session, db.dialect):
            return 0
        relays = list((await session.scalars(
            select(Relay).where(Relay.heartbeat_at.is_not(None)))).all())
        for relay in relays:
            state = liveness(relay, now, silence)
            if state is Liveness.LOST:
                status, reason = SessionStatus.FAILED, lost_reason(relay, silence)
            elif state is Liveness.STOPPED:
                status, reason = SessionStatus.ENDED, stopped_reason(relay)
            else:
                continue
            ids = (await session.scalars(select(RemoteSession.id).where(
                RemoteSession.relay_id == relay.id, RemoteSession.status.in_(_LIVE)))).all()
            due.extend((sid, status, reason) for sid in ids)
        moved = 0
        if db.dialect == "postgresql":
            # while the advisory lock is held, so a second replica skips the pass
            for session_id, status, reason in due:
                moved += await move(session_id, status, reason)
            due = []
    for session_id, status, reason in due:  # SQLite: one writer, after the read
        moved += await move(session_id, status, reason)
    if moved:
        log.info("relay sweep: %d session(s) of lost or stopped relays moved", moved)
    return moved
