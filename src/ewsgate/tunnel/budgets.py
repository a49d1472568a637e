"""Abuse budgets: what a peer may send that costs us work but carries nothing.

Some frames are legal one at a time and harmful by the thousand (HTTP/2's rapid-reset and
empty-frame floods, CVE-2023-44487 and CVE-2019-9518, are the same idea): a relay that opens a
stream and resets it before the agent accepted it, or before it sent a byte on it, makes the
agent dial the device for nothing; RESETs and WINDOWs for streams already closed, WINDOW
increments of a few bytes and empty DATA frames each cost a parse and a lookup and move no
data. Each kind has a budget per connection:

====================  ==========================================================  =========
budget                counted when the peer sends ...                             default
====================  ==========================================================  =========
``early_resets``      RESET for a stream it opened, before we accepted it or      128 + 32/s
                      before it sent a byte on it (the agent end only)
``closed_frames``     RESET, WINDOW or ACCEPT for a stream no longer open, or     256 + 64/s
                      DATA on a stream the peer itself already ended or reset
``small_windows``     WINDOW increment below ``min(1024, window / 4)``            256 + 64/s
``empty_data``        DATA with no payload and no END_STREAM                      128 + 32/s
====================  ==========================================================  =========

A budget starts full (``burst``) and refills by ``per_second`` up to ``burst`` whenever
:meth:`Budgets.refill` is given a later time. The core has no clock: ``Connection.tick(now)``
passes the adapter's monotonic time in. Spending is one integer decrement on a path that is
already the unusual one (a reset, a closed stream, an empty frame), so the hot path -- DATA
with bytes, WINDOW frames of real credit -- pays one comparison at most. An empty budget is a
connection error with :attr:`~ewsgate.tunnel.errors.ErrorCode.ENHANCE_YOUR_CALM`: GOAWAY with
that code and a reason naming the budget, then the connection is closed.

Our own implementation never comes near a budget: it batches credit in quarter windows, never
sends an empty DATA frame without END_STREAM, and resets a stream at most once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ewsgate.tunnel.errors import ErrorCode, RemoteProtocolError

__all__ = ["BUDGET_NAMES", "Budget", "BudgetExceededError", "Budgets"]

#: every budget, in the order of the table above
BUDGET_NAMES = ("early_resets", "closed_frames", "small_windows", "empty_data")

_WHAT = {
    "early_resets": "streams opened and reset before they were accepted or used",
    "closed_frames": "frames for streams that are already closed",
    "small_windows": "WINDOW frames of a few bytes of credit",
    "empty_data": "empty DATA frames",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Budget:
    """``burst`` events at once, refilled by ``per_second`` (both whole numbers)."""

    burst: int
    per_second: int

    def __post_init__(self) -> None:
        if not (1 <= self.burst <= 1 << 24 and 0 <= self.per_second <= 1 << 24):
            raise ValueError(f"Budget(burst={self.burst}, per_second={self.per_second}): burst "
                             "must be 1..2^24 and per_second 0..2^24")


class BudgetExceededError(RemoteProtocolError):
    """A budget ran out: the peer floods. ``budget`` names it (one of :data:`BUDGET_NAMES`)."""

    def __init__(self, budget: str, limit: Budget) -> None:
        super().__init__(
            f"the peer sent more {_WHAT[budget]} than allowed ({limit.burst} at once, "
            f"{limit.per_second} per second; budget {budget!r}); closing the connection. A "
            "well-behaved peer never comes near it: see docs/tunnel-protocol.md, Abuse budgets",
            ErrorCode.ENHANCE_YOUR_CALM)
        self.budget = budget


class Budgets:
    """The remaining allowance of each budget on one connection (plain integer attributes)."""

    __slots__ = ("_at", "_limits", "closed_frames", "early_resets", "empty_data",
                 "small_windows")

    def __init__(self, limits: dict[str, Budget]) -> None:
        self._limits = limits
        #: per budget, the time up to which it has been refilled (None before the first tick)
        self._at: dict[str, float] | None = None
        self.early_resets = limits["early_resets"].burst
        self.closed_frames = limits["closed_frames"].burst
        self.small_windows = limits["small_windows"].burst
        self.empty_data = limits["empty_data"].burst

    def exceeded(self, budget: str) -> BudgetExceededError:
        """The error to raise when ``budget`` went below zero."""
        return BudgetExceededError(budget, self._limits[budget])

    def remaining(self, budget: str) -> int:
        value: int = getattr(self, budget)
        return max(0, value)

    def refill(self, now: float) -> None:
        """Add what the time since each budget's last refill earned, up to its burst.

        Whole tokens only; the fraction of a token not earned yet is kept (a budget's refill
        time advances by the whole tokens it was given), so frequent ticks lose nothing.
        """
        at = self._at
        if at is None:
            self._at = dict.fromkeys(BUDGET_NAMES, now)
            return
        for name in BUDGET_NAMES:
            limit = self._limits[name]
            left: int = getattr(self, name)
            since = at[name]
            if left >= limit.burst or not limit.per_second or now <= since:
                at[name] = max(now, since) if left >= limit.burst else since
                continue
            earned = int((now - since) * limit.per_second)
            if earned <= 0:
                continue
            if left + earned >= limit.burst:
                setattr(self, name, limit.burst)
                at[name] = now
            else:
                setattr(self, name, left + earned)
                at[name] = since + earned / limit.per_second
