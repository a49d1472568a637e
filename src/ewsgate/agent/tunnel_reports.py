"""What the agent tells the portal about a relay's misbehaviour, and when it cuts the relay.

Sans-I/O: time comes in as a number. One :class:`ReportLedger` per session records

* ``destination_refused`` -- the relay asked for a port index or address the agent refuses;
* ``stream_refused`` -- a stream over ``--max-device-connections`` (not counted as a fault);
* ``protocol_violation`` -- the relay broke the tunnel protocol: one stream's rules (the
  stream was reset) or the connection's (the agent closed it: GOAWAY with the code, e.g.
  ``ENHANCE_YOUR_CALM`` for an exhausted abuse budget);
* ``relay_cut`` -- the agent gave up on the relay for this session (below).

and turns them into :class:`TunnelReport` values for the control stream
(``AgentMessage.tunnel_report``, see docs/control-channel.md). Rate limit: at most ``burst``
reports at once, then one per ``interval`` seconds; what happens in between is counted, not
lost -- the next report of the same kind and code carries the count, and :meth:`flush` (at
the end of the session) sends whatever is still pending.

**Cutting.** A relay that keeps doing it is cut: when ``max_violations`` tunnel connections of
the session were closed for the relay's violations (it reconnected and did it again), or when
``max_faults`` destination refusals and stream violations added up, :meth:`record` returns
the reason and the agent ends the session's tunnel for good, reporting ``relay_cut``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KINDS", "MAX_DETAIL", "ReportLedger", "TunnelReport", "clean_detail"]

KINDS = ("destination_refused", "stream_refused", "protocol_violation", "relay_cut")
#: longest detail text sent to the portal (characters)
MAX_DETAIL = 400


def clean_detail(text: str) -> str:
    """``text`` with control characters replaced and cut to :data:`MAX_DETAIL`."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[:MAX_DETAIL + 1])
    return cleaned if len(cleaned) <= MAX_DETAIL else cleaned[:MAX_DETAIL - 1] + "…"


@dataclass(frozen=True, kw_only=True, slots=True)
class TunnelReport:
    """One report for the portal: ``count`` occurrences of ``kind``/``code`` in a session."""

    session_id: str
    #: one of :data:`KINDS`
    kind: str
    #: the tunnel error code's name, e.g. ``DESTINATION_REFUSED``, ``ENHANCE_YOUR_CALM``
    code: str
    #: the last occurrence's sentence (what happened, why), cleaned and capped
    detail: str
    #: occurrences since the previous report of this kind and code (at least 1)
    count: int
    #: the abuse budget the relay exhausted, if that was the violation
    budget: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown tunnel report kind {self.kind!r}")
        if self.count < 1:
            raise ValueError("a report stands for at least one occurrence")


class _Pending:
    __slots__ = ("budget", "count", "detail")

    def __init__(self) -> None:
        self.count = 0
        self.detail = ""
        self.budget = ""


class ReportLedger:
    """Rate-limited reports and the cut decision for one session (see the module docstring)."""

    def __init__(self, session_id: str, *, burst: int = 10, interval: float = 5.0,
                 max_violations: int = 3, max_faults: int = 64) -> None:
        if burst < 1 or interval <= 0 or max_violations < 1 or max_faults < 1:
            raise ValueError("ReportLedger needs burst >= 1, interval > 0, max_violations "
                             ">= 1 and max_faults >= 1")
        self.session_id = session_id
        self.burst, self.interval = burst, interval
        self.max_violations, self.max_faults = max_violations, max_faults
        self._tokens = float(burst)
        self._at: float | None = None
        #: (kind, code) -> occurrences not reported yet, in arrival order
        self._pending: dict[tuple[str, str], _Pending] = {}
        #: tunnel connections closed for the relay's violations, in this session
        self.violations = 0
        #: destination refusals and stream violations, in this session
        self.faults = 0
        self.cut = False
        self.sent = 0

    def record(self, kind: str, code: str, detail: str, now: float, *, fatal: bool = False,
               budget: str = "") -> tuple[list[TunnelReport], str | None]:
        """Count one occurrence. Returns the reports to send now, and the reason to cut the
        relay when this occurrence was one too many (only once per session)."""
        if kind not in KINDS:
            raise ValueError(f"unknown tunnel report kind {kind!r}")
        entry = self._pending.setdefault((kind, code), _Pending())
        entry.count += 1
        entry.detail, entry.budget = clean_detail(detail), budget
        cut: str | None = None
        first = (kind, code)
        if kind == "protocol_violation" and fatal:
            self.violations += 1
        elif kind in ("destination_refused", "protocol_violation"):
            self.faults += 1
        if not self.cut and (self.violations >= self.max_violations
                             or self.faults >= self.max_faults):
            self.cut = True
            cut = (f"the relay kept breaking the agent's rules in this session "
                   f"({self.violations} tunnel connection(s) closed for protocol violations, "
                   f"{self.faults} refused destination(s) or stream violation(s); last: "
                   f"{clean_detail(detail)}); the agent closed the tunnel and will not "
                   "reconnect for this session")
            first = ("relay_cut", "ENHANCE_YOUR_CALM")
            final = self._pending[first] = _Pending()
            final.count, final.detail, final.budget = 1, clean_detail(cut), budget
            self._tokens = max(self._tokens, 1.0)  # the cut is always reported at once
        return self._take(now, first), cut

    def _take(self, now: float, key: tuple[str, str]) -> list[TunnelReport]:
        if self._at is not None and now > self._at:
            self._tokens = min(float(self.burst),
                               self._tokens + (now - self._at) / self.interval)
        self._at = now if self._at is None else max(self._at, now)
        out: list[TunnelReport] = []
        keys = [key, *[k for k in self._pending if k != key]]
        for k in keys:
            if self._tokens < 1.0 or k not in self._pending:
                continue
            self._tokens -= 1.0
            out.append(self._report(k, self._pending.pop(k)))
        return out

    def flush(self) -> list[TunnelReport]:
        """Everything still pending (at the end of the session), regardless of the rate."""
        out = [self._report(k, entry) for k, entry in self._pending.items()]
        self._pending.clear()
        return out

    def _report(self, key: tuple[str, str], entry: _Pending) -> TunnelReport:
        self.sent += 1
        return TunnelReport(session_id=self.session_id, kind=key[0], code=key[1],
                            detail=entry.detail, count=entry.count, budget=entry.budget)
