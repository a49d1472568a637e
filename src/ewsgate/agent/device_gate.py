"""Re-verifying a session's device while the session lives.

The identity check before ``OpenSession`` answers for that moment only. An IP can change
hands mid-session (DHCP, a host that takes over the address), so a session's
:class:`DeviceGate` runs the whole check again (:func:`ewsgate.agent.device_check.run_check`,
SNMP/ARP identity and pins):

* on **every tunnel reconnect** (``force=True``): after a drop nobody knows what happened at
  the site meanwhile;
* **before a new device connection** once the last check is older than ``max_age``
  (default 5 min, ``ewsgate agent run --reverify-after``).

The pins a re-verification compares with are the portal's, completed with what the session's
first check saw (so a device first seen in this session is held to what it showed then). A
check that does not verify raises :class:`IdentityLost`, after ``on_lost`` was told (the agent
reports it to the portal, which fails the session with the reason on the job); the session's
tunnel then ends and nothing more is dialled. Checks are serialised: streams that arrive
together wait for one check instead of sending one each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from ewsgate.agent.device_check import CheckOutcome, DeviceCheck, run_check
from ewsgate.aio.errors import TunnelError
from ewsgate.tunnel import ErrorCode

__all__ = ["DEFAULT_MAX_AGE", "DeviceGate", "IdentityLost"]

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE = 300.0

Runner = Callable[[DeviceCheck], Awaitable[CheckOutcome]]


class IdentityLost(TunnelError):
    """A re-verification of the session's device did not verify; the session must end."""

    def __init__(self, code: str, message: str) -> None:
        # the tunnel's code for "the device changed under the session"
        super().__init__(message, ErrorCode.DEVICE_CERT_CHANGED)
        self.identity_code = code


class DeviceGate:
    """The device check of one session, re-run on reconnect and when stale."""

    def __init__(self, check: DeviceCheck, *, session_id: str, run: Runner = run_check,
                 clock: Callable[[], float] = time.monotonic,
                 max_age: float = DEFAULT_MAX_AGE,
                 on_lost: Callable[[str, str, str], None] | None = None,
                 checked: CheckOutcome | None = None) -> None:
        if not 1.0 <= max_age <= 3600.0:
            raise ValueError("re-verification age: use 1 to 3600 seconds")
        self.check = check
        self.session_id = session_id
        self.max_age = max_age
        self.on_lost = on_lost
        self.runs = 0
        self.lost: IdentityLost | None = None
        self._run = run
        self._clock = clock
        self._lock = asyncio.Lock()
        self._checked_at: float | None = None
        self._reported = False
        if checked is not None:
            self._accept(checked)

    def _accept(self, outcome: CheckOutcome) -> None:
        self.check = replace(self.check, pins=self.check.pins.merged(outcome.learned))
        self._checked_at = self._clock()

    def stale(self) -> bool:
        return self._checked_at is None or self._clock() - self._checked_at >= self.max_age

    async def ensure(self, *, force: bool, why: str) -> None:
        """Re-verify if ``force`` or stale; raise :class:`IdentityLost` when it fails."""
        if self.lost is not None:
            raise self.lost
        started = self._clock()
        async with self._lock:
            if self.lost is not None:
                raise self.lost
            fresh = self._checked_at is not None and self._checked_at >= started
            if fresh or (not force and not self.stale()):
                return
            self.runs += 1
            outcome = await self._run(self.check)
            if outcome.verified:
                self._accept(outcome)
                log.info("session %s: device %s re-verified (%s)", self.session_id,
                         self.check.request.ip, why)
                return
            message = (f"the device was re-verified ({why}) and the check failed: "
                       f"{outcome.detail}; the session is ended")
            self.lost = IdentityLost(outcome.code, message)
            log.warning("session %s: %s", self.session_id, message)
            self.report(outcome.code, message)
            raise self.lost

    def report(self, code: str, message: str) -> None:
        """Tell ``on_lost`` that the session ends for its device (once per session)."""
        if self._reported:
            return
        self._reported = True
        if self.lost is None:
            self.lost = IdentityLost(code, message)
        if self.on_lost is not None:
            try:
                self.on_lost(self.session_id, code, message)
            except Exception:  # reporting must not keep the session alive
                log.exception("session %s: reporting the device failure failed",
                              self.session_id)
