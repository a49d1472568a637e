"""Admission of control streams: a token bucket on ``Connect`` against reconnect storms.

When a replica restarts, or its neighbour dies and its agents fail over, thousands of agents
call ``Connect`` within seconds. Each admitted stream costs the portal a database check of the
certificate (``authorize``), a presence write and a Welcome; past what the process can take in
the agents' connect timeout (10 s), the agents give up and retry with a new TLS handshake, and
the retries are more work, not less (docs/control-channel.md, "reconnect storm").

The bucket admits ``rate`` streams per second with bursts of ``burst``. A call over the rate
is refused *before* any database work with ``RESOURCE_EXHAUSTED`` and ``retry_after=<s>`` in
its details, and the pauses it hands out are **reservations**: each refused caller gets the
next free slot at the admitted rate (a cursor moves ``1/rate`` per refusal), so a thousand
refused agents come back spread over ``1000/rate`` seconds rather than together — refusals
never multiply into retries. The agent waits at least that long
(:func:`ewsgate.agent.control_client.retry_after_of`). Reservations reach at most
:data:`MAX_RETRY_AFTER` ahead; past it the refused caller is told that maximum.

A call whose client already gave up (its deadline passed, or it cancelled while queued in
gRPC) is dropped before the bucket and before the database: no work for a client that is gone.
The TLS handshake itself happens in gRPC's core before any Python code sees the call, so it is
bounded by gRPC's pending-call cap (``server_options``), not here.

Pure: the clock is passed in (``now`` in seconds, monotonic), no asyncio, no gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_RETRY_AFTER", "Admission", "AdmissionConfig", "ConnectAdmission"]

#: the longest pause a refusal asks for
MAX_RETRY_AFTER = 60.0


@dataclass(frozen=True)
class AdmissionConfig:
    """Streams admitted per second and the burst; ``rate`` 0 admits everything."""

    rate: float = 150.0
    burst: int = 300

    def __post_init__(self) -> None:
        if self.rate < 0:
            raise ValueError("the control stream admission rate must be 0 (off) or positive")
        if self.rate and self.burst < 1:
            raise ValueError("the control stream admission burst must be at least 1")


@dataclass(frozen=True)
class Admission:
    """The decision for one ``Connect``: admitted, or refused with the pause to wait."""

    admitted: bool
    retry_after: float = 0.0


class ConnectAdmission:
    """The token bucket with reservations for refused callers (see the module docstring)."""

    def __init__(self, config: AdmissionConfig, now: float) -> None:
        self.config = config
        self._tokens = float(config.burst)
        self._at = now
        self._cursor = now
        #: counters for the log and the bench
        self.admitted = 0
        self.refused = 0

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(float(self.config.burst),
                               self._tokens + (now - self._at) * self.config.rate)
            self._at = now

    def decide(self, now: float) -> Admission:
        """Admit one stream now, or refuse it with the reserved pause."""
        if not self.config.rate:
            self.admitted += 1
            return Admission(True)
        self._refill(now)
        if self._tokens >= 1.0 - 1e-9:  # a reserved slot is due exactly on the refill
            self._tokens -= 1.0
            self.admitted += 1
            return Admission(True)
        self._cursor = max(self._cursor, now) + 1.0 / self.config.rate
        wait = min(MAX_RETRY_AFTER, self._cursor - now)
        self._cursor = min(self._cursor, now + MAX_RETRY_AFTER)
        self.refused += 1
        return Admission(False, round(max(wait, 1.0 / self.config.rate), 3))
