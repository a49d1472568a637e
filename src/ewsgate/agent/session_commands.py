"""The agent's ``OpenSession`` and ``CloseSession`` command handlers.

``OpenSession`` (payload built by :mod:`ewsgate.portal.sessions.service`, see
docs/sessions.md)::

    {"session_id", "expires_at_unix_ms",
     "device":   {"ip", "hostname", "endpoints": [{"scheme", "port"}, ...]},
     "identity": <exactly a VerifyDevice payload>,
     "relay":    {"id", "name", "tunnel_address": "HOST:PORT"},
     "ticket":   "<tunnel ticket JWT>"}

1. progress ``verifying``; the identity check of :func:`ewsgate.agent.commands.verify_device`
   on ``identity``; anything but *verified* fails the command with the check's code and
   sentence (fail closed: the device is never dialled);
2. the identity check's IP must be the IP the tunnel will dial (``device.ip``) — the ticket
   names the device, and a payload whose two halves disagree is refused;
3. progress ``connecting``; :meth:`ewsgate.agent.tunnel_client.TunnelClient.open_session`
   dials the relay with the ticket and returns once admitted (its own refusals fail the
   command);
4. progress ``ready`` and the result ``{"status": "ready", "session_id"}``.

An ``OpenSession`` for a session whose tunnel is still up (the portal re-sends it when the
control stream comes back, see :mod:`ewsgate.portal.sessions.resume`) answers ``ready`` at
once. A restarted agent has no tunnel and opens it again with the fresh ticket.

``CloseSession`` ``{"session_id", "reason"}`` ends the tunnel and every device connection of the
session at once; ``{"closed": false}`` when there was none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

from ewsgate.agent.control_client import CommandContext, CommandFailure, CommandHandler
from ewsgate.agent.dialer import DeviceTarget
from ewsgate.agent.tunnel_client import SessionSpec
from ewsgate.aio.errors import TunnelError
from ewsgate.config import parse_host_port

__all__ = ["Tunnels", "session_handlers"]

Verify = Callable[[CommandContext], Awaitable[dict[str, Any]]]


class Tunnels(Protocol):
    """What the handlers need of :class:`ewsgate.agent.tunnel_client.TunnelClient`."""

    async def open_session(self, spec: SessionSpec) -> Any: ...

    async def close_session(self, session_id: str, reason: str = ...) -> bool: ...


def _spec(payload: dict[str, Any]) -> SessionSpec:
    try:
        session_id = str(payload["session_id"])
        relay = payload["relay"]
        address = parse_host_port(str(relay["tunnel_address"]))
        device = DeviceTarget.from_claim(dict(payload["device"]))
        expires_at = int(payload["expires_at_unix_ms"]) / 1000.0
        ticket = str(payload["ticket"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CommandFailure("bad_payload", f"OpenSession payload: {exc!r} is missing or "
                             "malformed") from None
    if not session_id or not ticket or not device.ip or not device.endpoints:
        raise CommandFailure("bad_payload", "OpenSession needs a session id, a ticket and a "
                             "device with at least one endpoint")
    return SessionSpec(session_id=session_id, relay_host=address.host,
                       relay_port=address.port, ticket=ticket, device=device,
                       expires_at=expires_at)


def session_handlers(tunnels: Tunnels, *, verify: Verify | None = None
                     ) -> dict[str, CommandHandler]:
    """``OpenSession`` and ``CloseSession`` over ``tunnels``; ``verify`` is the identity
    check (default: :func:`ewsgate.agent.commands.verify_device`)."""

    async def open_session(ctx: CommandContext) -> dict[str, Any]:
        spec = _spec(ctx.payload)
        current = getattr(tunnels, "session", None)
        live = current(spec.session_id) if callable(current) else None
        if live is not None and getattr(live, "active", True):
            # the portal re-sends OpenSession when this agent's control stream comes back; a
            # tunnel that survived the reconnect is the session resumed already
            ctx.progress("ready", "the tunnel is already up")
            return {"status": "ready", "session_id": spec.session_id, "resumed": True}
        identity = ctx.payload.get("identity")
        if not isinstance(identity, dict):
            raise CommandFailure("bad_payload", "OpenSession needs the 'identity' object")
        if str(identity.get("ip", "")) != spec.device.ip:
            raise CommandFailure("bad_payload", f"OpenSession: the identity check is for "
                                 f"{identity.get('ip')!r} but the tunnel would reach "
                                 f"{spec.device.ip!r}; refusing")
        ctx.progress("verifying", f"checking that {spec.device.ip} is the device on record")
        check = verify
        if check is None:
            from ewsgate.agent.commands import verify_device

            check = verify_device
        result = await check(replace(ctx, payload=identity))
        if result.get("result") != "verified":
            raise CommandFailure(str(result.get("code") or "identity_not_verified"),
                                 str(result.get("detail") or "the device's identity could "
                                     "not be verified; nothing was dialled"))
        ctx.progress("connecting", f"connecting to relay {spec.relay_host}:{spec.relay_port}")
        try:
            await tunnels.open_session(spec)
        except TunnelError as exc:
            code = getattr(getattr(exc, "code", None), "name", None) or "tunnel_failed"
            raise CommandFailure(f"tunnel_{code.lower()}", f"the relay did not admit the "
                                 f"tunnel: {exc}") from None
        except OSError as exc:
            raise CommandFailure("relay_unreachable", f"cannot reach the relay at "
                                 f"{spec.relay_host}:{spec.relay_port}: {exc}") from None
        ctx.progress("ready", "the tunnel is up")
        return {"status": "ready", "session_id": spec.session_id}

    async def close_session(ctx: CommandContext) -> dict[str, Any]:
        session_id = str(ctx.payload.get("session_id") or "")
        if not session_id:
            raise CommandFailure("bad_payload", "CloseSession needs a session_id")
        reason = str(ctx.payload.get("reason") or "the portal ended the session")
        return {"closed": await tunnels.close_session(session_id, reason)}

    return {"OpenSession": open_session, "CloseSession": close_session}
