"""What the portal revoked, as this relay knows it: the rules, and the state they read.

The relay learns revocations from the portal's event stream (:mod:`ewsgate.relay.revocation_feed`)
and obeys them itself, whatever the agent does. This module holds no I/O: events in, decisions
out, with the relay's clock passed in::

    Snapshot              → reconcile: every tunnel of a session the portal calls ended — or
                            does not know, if it was here before the snapshot was asked for —
                            is closed; the ended ones are remembered
    SessionRevoked        → close the session's tunnel; refuse its ticket (every generation)
                            until the session's own expiry
    InstallationRevoked   → close every tunnel whose ticket was issued at or before the
                            revocation (or whose certificate is the revoked one); refuse such
                            tickets and that certificate for as long as a ticket can live
    nothing heard         → after ``unreachable_after`` seconds (default 30) without a byte
                            from the portal, refuse new tunnels and new sign-ins

Admission (:meth:`Revocations.refusal`) is checked for every tunnel HELLO after its ticket
verified; it also refuses everything until the first snapshot arrived, because a relay that
never heard from the portal knows none of its revocations.

Live sessions while the portal is unreachable keep running until their own expiry (at most
30 minutes): the relay cannot tell a revocation it missed from a quiet portal, and ending every
session at each network blip would make the product unusable; new work is refused, so the
exposure is bounded by what was already open. docs/relay.md says the same to operators.
"""

from __future__ import annotations

from dataclasses import dataclass

from ewsgate.relay.tickets import TicketError, TunnelTicket
from ewsgate.revocations import Event, Heartbeat, InstallationRevoked, SessionRevoked, Snapshot

__all__ = ["DEFAULT_UNREACHABLE_AFTER", "Decision", "Revocations", "TunnelFacts"]

#: seconds without a byte from the portal after which new tunnels and sign-ins are refused
DEFAULT_UNREACHABLE_AFTER = 30.0
#: how long an installation revocation binds: the longest ticket, with a margin (seconds)
_INSTALLATION_KEEP = 35 * 60.0


@dataclass(frozen=True, slots=True)
class Decision:
    """What applying an event asks of the relay: sessions to end now, with the reason."""

    close: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TunnelFacts:
    session_id: str
    installation_id: str
    issued_at: float
    thumbprint: str | None
    registered_at: float


class Revocations:
    """The relay's revocation state (one per relay process)."""

    def __init__(self, *, unreachable_after: float = DEFAULT_UNREACHABLE_AFTER) -> None:
        if unreachable_after <= 0:
            raise ValueError("unreachable_after must be positive")
        self.unreachable_after = unreachable_after
        #: session id -> (the session's expiry in epoch seconds, why it ended)
        self._sessions: dict[str, tuple[float, str]] = {}
        self._installations: list[InstallationRevoked] = []
        #: relay clock time of the last byte from the portal; None before the first snapshot
        self.last_heard: float | None = None
        self.snapshots = 0

    # ------------------------------------------------------------------ events

    def heard(self, now: float) -> None:
        """Bytes arrived from the portal's stream (a heartbeat counts)."""
        if self.snapshots:
            self.last_heard = now

    def apply(self, event: Event, *, now: float, tunnels: list[TunnelFacts] | None = None,
              asked_at: float | None = None) -> Decision:
        """Apply one event; ``tunnels`` are the live ones (see :meth:`tunnel`), ``asked_at``
        when the stream carrying a snapshot was requested (relay clock)."""
        live = tunnels or []
        if isinstance(event, Heartbeat):
            self.heard(now)
            return Decision()
        if isinstance(event, SessionRevoked):
            self._remember_session(event)
            return Decision(tuple((t.session_id, event.reason) for t in live
                                  if t.session_id == event.session_id))
        if isinstance(event, InstallationRevoked):
            self._remember_installation(event)
            return Decision(tuple((t.session_id, event.reason) for t in live
                                  if _hits(event, t.installation_id, t.issued_at, t.thumbprint)))
        return self._reconcile(event, now=now, live=live, asked_at=asked_at)

    def _reconcile(self, snapshot: Snapshot, *, now: float, live: list[TunnelFacts],
                   asked_at: float | None) -> Decision:
        self.snapshots += 1
        self.last_heard = now
        for revoked in snapshot.revoked_sessions:
            self._remember_session(revoked)
        for installation in snapshot.installations:
            self._remember_installation(installation)
        self._prune(snapshot.server_time)
        known = set(snapshot.live_sessions)
        close: list[tuple[str, str]] = []
        for tunnel in live:
            reason = self.tunnel_refusal(tunnel.session_id, tunnel.installation_id,
                                         tunnel.issued_at, tunnel.thumbprint)
            if reason is None and tunnel.session_id not in known and (
                    asked_at is None or tunnel.registered_at < asked_at):
                reason = ("the portal does not list the session as live on this relay "
                          "(reconciliation)")
            if reason is not None:
                close.append((tunnel.session_id, reason))
        return Decision(tuple(close))

    def _remember_session(self, event: SessionRevoked) -> None:
        self._sessions[event.session_id] = (event.expires_at, event.reason)

    def _remember_installation(self, event: InstallationRevoked) -> None:
        if event not in self._installations:
            self._installations.append(event)

    def _prune(self, portal_now: float) -> None:
        for sid in [s for s, (exp, _) in self._sessions.items() if exp <= portal_now]:
            del self._sessions[sid]
        self._installations = [i for i in self._installations
                               if i.revoked_at + _INSTALLATION_KEEP > portal_now]

    # ------------------------------------------------------------------ decisions

    @staticmethod
    def tunnel(ticket: TunnelTicket, registered_at: float) -> TunnelFacts:
        """The facts about a live tunnel that revocations are checked against."""
        return TunnelFacts(session_id=ticket.session_id, installation_id=ticket.installation_id,
                       issued_at=ticket.issued_at, thumbprint=ticket.certificate_thumbprint,
                       registered_at=registered_at)

    def reachable(self, now: float) -> bool:
        """True while the portal was heard from within ``unreachable_after`` seconds."""
        return self.last_heard is not None and now - self.last_heard <= self.unreachable_after

    def unreachable_reason(self, now: float) -> str | None:
        """Why new work is refused for want of the portal, or None."""
        if self.last_heard is None:
            return ("the relay has not yet received the portal's revocation list (its event "
                    "stream is not connected); try again in a moment, and if it persists check "
                    "the relay's --portal-url and its credentials")
        if now - self.last_heard > self.unreachable_after:
            return (f"the relay has not heard from the portal for {now - self.last_heard:.0f} s "
                    f"(more than {self.unreachable_after:g} s), so it cannot know whether "
                    "sessions were revoked; new sessions resume when the portal is reachable")
        return None

    def session_refusal(self, session_id: str) -> str | None:
        """Why the session is revoked at the portal, or None."""
        found = self._sessions.get(session_id)
        return found[1] if found is not None else None

    def tunnel_refusal(self, session_id: str, installation_id: str, issued_at: float,
                       thumbprint: str | None) -> str | None:
        """Why a ticket with these facts is revoked, or None."""
        session = self.session_refusal(session_id)
        if session is not None:
            return f"session {session_id} was ended at the portal: {session}"
        for revoked in self._installations:
            if _hits(revoked, installation_id, issued_at, thumbprint):
                return (f"installation {installation_id} was revoked at the portal "
                        f"({revoked.reason}); tickets and certificates from before that are "
                        "refused — start a new session (re-enrol the agent if it was replaced)")
        return None

    def refusal(self, ticket: TunnelTicket, *, now: float) -> TicketError | None:
        """The admission check after a ticket verified: revoked, or the portal unknown."""
        unreachable = self.unreachable_reason(now)
        if unreachable is not None:
            return TicketError("portal_unreachable", unreachable)
        reason = self.tunnel_refusal(ticket.session_id, ticket.installation_id,
                                     ticket.issued_at, ticket.certificate_thumbprint)
        if reason is not None:
            code = "session_revoked" if self.session_refusal(ticket.session_id) else \
                "installation_revoked"
            return TicketError(code, reason)
        return None

    @property
    def revoked_sessions(self) -> list[str]:
        return list(self._sessions)


def _hits(revoked: InstallationRevoked, installation_id: str, issued_at: float,
          thumbprint: str | None) -> bool:
    if revoked.installation_id != installation_id:
        return False
    if revoked.thumbprint is not None and thumbprint == revoked.thumbprint:
        return True
    return issued_at <= revoked.revoked_at
