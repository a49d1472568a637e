"""Pending sign-ins: bounded per session, rate-limited per client address, never evicted.

A sign-in starts when a browser without the relay's cookie asks for a session page: the relay
keeps the PKCE verifier under a fresh ``state`` until the portal sends the browser back (at
most ``ttl`` seconds). Anyone who knows a session's address can start sign-ins, so the table
must not be one shared queue that drops the oldest entry when full: one holder of a session URL
could then evict every technician's sign-in on the relay by starting enough of their own.

Instead:

- each session holds at most ``per_session`` pending sign-ins; beyond that new ones are refused
  (429) until old ones finish or expire: nobody's sign-in is dropped to make room, and one
  session's flood stays inside that session;
- each client address (IPv4, or the /64 of an IPv6 address: one host usually has a whole /64)
  may start ``per_client_per_minute`` sign-ins a minute, a token bucket with that burst;
- a global ceiling ``max_total`` (memory safety) refuses, it does not evict.

The clock is injected; no I/O.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

from ewsgate.relay.clock import Clock

__all__ = ["PendingSignIns", "SignInRefused", "client_key"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SignInRefused:
    """Why a sign-in could not start; ``retry_after`` in seconds."""

    code: str
    message: str
    retry_after: int


def client_key(address: str | None) -> str:
    """The rate-limit key of a client address: the IPv4 address or the IPv6 /64."""
    if not address:
        return "-"
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(parsed) >> 64 << 64, 64)))
    return str(parsed)


class PendingSignIns(Generic[T]):
    """``state`` → pending sign-in, with the limits in the module docstring."""

    def __init__(self, clock: Clock, *, ttl: float, per_session: int = 16,
                 per_client_per_minute: int = 20, max_total: int = 100_000) -> None:
        if per_session < 1 or per_client_per_minute < 1 or max_total < per_session:
            raise ValueError("sign-in limits must be positive (and the total at least the "
                             "per-session limit)")
        self._clock = clock
        self.ttl = ttl
        self.per_session = per_session
        self.per_client_per_minute = per_client_per_minute
        self.max_total = max_total
        self._items: dict[str, tuple[str, float, T]] = {}
        self._by_session: dict[str, OrderedDict[str, float]] = {}
        #: client key → (tokens, when last refilled)
        self._buckets: dict[str, tuple[float, float]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def pending_for(self, session_id: str) -> int:
        self._expire_session(session_id)
        return len(self._by_session.get(session_id, ()))

    def _expire_session(self, session_id: str) -> None:
        states = self._by_session.get(session_id)
        if states is None:
            return
        horizon = self._clock.now() - self.ttl
        while states:
            state, created = next(iter(states.items()))
            if created > horizon:
                break
            states.popitem(last=False)
            self._items.pop(state, None)
        if not states:
            del self._by_session[session_id]

    def _sweep(self) -> None:
        for session_id in list(self._by_session):
            self._expire_session(session_id)
        now = self._clock.now()
        full = float(self.per_client_per_minute)
        for key, (tokens, updated) in list(self._buckets.items()):
            if tokens + (now - updated) * full / 60.0 >= full:
                del self._buckets[key]  # a full bucket is the same as none

    def _take_token(self, key: str) -> float | None:
        """None if a token was taken, else seconds until the next one."""
        now = self._clock.now()
        rate = self.per_client_per_minute / 60.0
        tokens, updated = self._buckets.get(key, (float(self.per_client_per_minute), now))
        tokens = min(float(self.per_client_per_minute), tokens + (now - updated) * rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate
        self._buckets[key] = (tokens - 1.0, now)
        return None

    def add(self, state: str, session_id: str, client: str | None,
            value: T) -> SignInRefused | None:
        """Remember a new sign-in, or say why not (nothing already pending is dropped)."""
        self._expire_session(session_id)
        if len(self._items) >= self.max_total or len(self._buckets) >= self.max_total:
            self._sweep()
        states = self._by_session.get(session_id)
        if states is not None and len(states) >= self.per_session:
            oldest = next(iter(states.values()))
            return SignInRefused(
                "too_many_pending_sign_ins",
                f"{self.per_session} sign-ins to this session are already in progress. Finish "
                "one of them, or wait a few minutes and reload.",
                max(1, int(oldest + self.ttl - self._clock.now()) + 1))
        if len(self._items) >= self.max_total:
            return SignInRefused(
                "relay_sign_ins_full",
                "The relay has too many sign-ins in progress. Wait a minute and reload.", 60)
        wait = self._take_token(client_key(client))
        if wait is not None:
            return SignInRefused(
                "sign_in_rate_limited",
                "Too many sign-ins were started from your address. Wait a moment and reload.",
                max(1, int(wait) + 1))
        self._items[state] = (session_id, self._clock.now(), value)
        self._by_session.setdefault(session_id, OrderedDict())[state] = self._clock.now()
        return None

    def pop(self, state: str) -> tuple[str, float, T] | None:
        """(session id, created, value) of ``state``, removed (single use); None if unknown."""
        item = self._items.pop(state, None)
        if item is None:
            return None
        states = self._by_session.get(item[0])
        if states is not None:
            states.pop(state, None)
            if not states:
                del self._by_session[item[0]]
        return item
