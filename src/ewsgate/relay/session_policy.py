"""The customer policy as the relay enforces it on every browser request: mode and idle timeout.

The portal puts the session's policy in the tunnel ticket it signs (claim ``pol``:
``{"mode": "full"|"read-only", "idle": seconds, "panel": bool}``), so the relay learns it with
the tunnel and needs no other call. Two rules apply here:

- **read-only**: only GET and HEAD reach the device; a WebSocket (the device's live panel)
  only when ``panel`` allows it; anything else gets the *read-only* page and a ``refused``
  entry in the session's log;
- **idle timeout**: no browser request for ``idle`` seconds ends the session here (tunnel
  closed, browsers cut), on top of the hard cap. :class:`IdleWatch` keeps one timer per
  session on the relay's injected clock.

A ticket without ``pol`` (an older portal) means a full session without an idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ewsgate.relay.clock import Clock

__all__ = ["IdleWatch", "SessionPolicy"]

log = logging.getLogger(__name__)

_READ_METHODS = frozenset({b"GET", b"HEAD"})
#: headers some device web servers honour to turn a GET into another method
_METHOD_OVERRIDES = (b"x-http-method-override", b"x-http-method", b"x-method-override")


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionPolicy:
    """What the customer's policy says about one session, from its ticket."""

    read_only: bool = False
    #: seconds without a browser request after which the session ends (None: no limit)
    idle_timeout: float | None = None
    allow_panel: bool = True

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> SessionPolicy:
        """The policy in a ticket's claims; a malformed ``pol`` is read as the strictest."""
        pol = claims.get("pol")
        if pol is None:
            return cls()
        if not isinstance(pol, dict):
            return cls(read_only=True, idle_timeout=60.0, allow_panel=False)
        idle = pol.get("idle")
        seconds = 60.0
        if isinstance(idle, int | float) and not isinstance(idle, bool) and idle > 0:
            seconds = float(idle)
        return cls(read_only=pol.get("mode") != "full", idle_timeout=seconds,
                   allow_panel=pol.get("panel") is True)

    def refusal(self, method: bytes, *, websocket: bool,
                fields: Mapping[bytes, bytes] | None = None) -> str | None:
        """Why the request may not reach the device, or None when it may. ``fields``: the
        request's headers (lower-case names); a method override is refused too."""
        if not self.read_only:
            return None
        override = next((name for name in _METHOD_OVERRIDES if fields and name in fields), None)
        if override is not None:
            return (f"The request asks the device to treat it as another method "
                    f"({override.decode()}), which a read-only session does not send.")
        if websocket:
            if self.allow_panel:
                return None
            return ("The customer's policy does not allow the device's live panel "
                    "(WebSocket) in read-only sessions.")
        if method in _READ_METHODS:
            return None
        return (f"This {method.decode('latin-1', 'replace')[:16]} would change the device, "
                "so it was not sent. Ask the customer for a full session if you need to change "
                "settings.")


class IdleWatch:
    """One idle timer per session: :meth:`touch` on every browser request; ``end(session_id,
    reason)`` is awaited once a session has had none for its timeout."""

    def __init__(self, clock: Clock, end: Callable[[str, str], Awaitable[Any]]) -> None:
        self._clock = clock
        self._end = end
        self._last: dict[str, tuple[float, float]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def touch(self, session_id: str, timeout: float | None) -> None:
        """A browser request for the session arrived now."""
        if timeout is None:
            return
        self._last[session_id] = (self._clock.now(), timeout)
        if session_id not in self._tasks:
            task = asyncio.ensure_future(self._watch(session_id))
            self._tasks[session_id] = task
            task.add_done_callback(lambda _t: self._tasks.pop(session_id, None))

    def idle_for(self, session_id: str) -> float | None:
        """Seconds since the session's last browser request (None: not watched)."""
        last = self._last.get(session_id)
        return None if last is None else self._clock.now() - last[0]

    def expired(self, session_id: str) -> bool:
        """Whether the session is past its idle timeout now (a request must not revive it)."""
        last = self._last.get(session_id)
        return last is not None and self._clock.now() >= last[0] + last[1]

    async def _watch(self, session_id: str) -> None:
        while True:
            last, timeout = self._last[session_id]
            await self._clock.sleep_until(last + timeout)
            if self._last[session_id][0] == last:
                break
        minutes = timeout / 60
        try:
            await self._end(session_id, f"no browser request for {minutes:g} minute(s): the "
                                        "customer's idle timeout ended the session")
        except Exception:
            log.exception("ending idle session %s failed", session_id)

    async def aclose(self) -> None:
        """Cancel every timer."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
