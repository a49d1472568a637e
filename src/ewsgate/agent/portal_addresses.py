"""Where the agent dials its control stream: several portal replicas, tried in turn.

The installation knows one or more portal addresses (``HOST:PORT``; ``control_addresses`` in
``installation.json``, or ``ewsgate agent run --portal-addresses``). A name may resolve to
several replicas: each round resolves every name again (``getaddrinfo``, so DNS changes are
seen) and lists every distinct address, the addresses of one name shuffled so the agents of a
site spread over the replicas::

    round:  a1 ─fail─▶ a2 ─fail─▶ b1 ─fail─▶ (round over: exponential backoff) ─▶ a1 …
                        │
                        └─ up, then the replica dies ─▶ the next address, after a short
                           jittered pause (0..2·base), not after the full backoff

The TLS name stays the portal's (``server_name`` in the state), whichever address is dialled.
The rules are here, without I/O but the injected resolver; the control client applies them.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Sequence

from ewsgate.config import HostPort

__all__ = ["PortalAddresses", "Resolver", "system_resolver"]

#: ``resolve(host, port) -> addresses``; raises OSError when the name does not resolve
Resolver = Callable[[str, int], Sequence[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (getaddrinfo, TCP), in the resolver's order."""
    seen: list[str] = []
    for *_ignored, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(sockaddr[0])
        if address not in seen:
            seen.append(address)
    return seen


class PortalAddresses:
    """The rotation over the portal's addresses (see the module docstring)."""

    def __init__(self, configured: Sequence[HostPort], *, resolve: Resolver = system_resolver,
                 rng: random.Random | None = None) -> None:
        if not configured:
            raise ValueError("at least one portal address is needed")
        self.configured = tuple(configured)
        self._resolve = resolve
        self._rng = rng or random.Random()
        self._round: list[HostPort] = []
        self._index = 0
        #: why a name did not resolve in the last round (for the log)
        self.unresolved: dict[str, str] = {}

    def _new_round(self) -> None:
        addresses: list[HostPort] = []
        self.unresolved = {}
        for entry in self.configured:
            try:
                found = list(self._resolve(entry.host, entry.port))
            except OSError as exc:
                self.unresolved[str(entry)] = str(exc)
                found = []
            self._rng.shuffle(found)
            for host in found or [entry.host]:  # unresolved: let the dialler try the name
                candidate = HostPort(host, entry.port)
                if candidate not in addresses:
                    addresses.append(candidate)
        self._round, self._index = addresses, 0

    def current(self) -> HostPort:
        """The address to dial now."""
        if not self._round:
            self._new_round()
        return self._round[self._index]

    def advance(self) -> bool:
        """Move to the next address; True when the round is over (every address was tried
        since the last success): the caller then backs off in full."""
        if not self._round:
            self._new_round()
        self._index += 1
        if self._index < len(self._round):
            return False
        self._round = []
        return True

    def succeeded(self) -> None:
        """The current address gave a stream: the next failure starts a fresh round there."""
        if self._round:
            current = self._round[self._index]
            self._round = [current, *(a for a in self._round if a != current)]
            self._index = 0

    @property
    def count(self) -> int:
        """How many addresses the current round holds."""
        if not self._round:
            self._new_round()
        return len(self._round)
