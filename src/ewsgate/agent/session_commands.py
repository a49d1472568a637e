"""The agent's ``OpenSession`` and ``CloseSession`` command handlers.

``OpenSession`` (payload built by :mod:`ewsgate.portal.sessions.service`, see
docs/sessions.md)::

    {"session_id", "expires_at_unix_ms",
     "device":   {"ip", "hostname", "endpoints": [{"scheme", "port"}, ...]},
     "identity": <exactly a VerifyDevice payload>,
     "relay":    {"id", "name", "tunnel_address": "HOST:PORT"},
     "ticket":   "<tunnel ticket JWT>"}

1. progress ``verifying``; the identity check of :func:`ewsgate.agent.commands.verify_device`
   on ``identity``, which first puts the IP to the address policy; anything but *verified*
   (a refused address included) fails the command with the check's code and sentence (fail
   closed: the device is never dialled);
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

from ewsgate.agent.address_policy import AddressPolicy
from ewsgate.agent.commands import policy_for
from ewsgate.agent.control_client import CommandContext, CommandFailure, CommandHandler
from ewsgate.agent.device_check import CheckOutcome, DeviceCheck, refused_by, run_check
from ewsgate.agent.device_gate import DEFAULT_MAX_AGE, DeviceGate
from ewsgate.agent.dialer import DeviceTarget
from ewsgate.agent.tunnel_client import SessionSpec
from ewsgate.aio.errors import TunnelError
from ewsgate.config import parse_host_port

__all__ = ["Tunnels", "session_handlers"]

Verify = Callable[[CommandContext], Awaitable[dict[str, Any]]]
Runner = Callable[[DeviceCheck], Awaitable[CheckOutcome]]
#: ``(session_id, code, detail)``: the agent ended a session because of its device
Report = Callable[[str, str, str], None]


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


def session_handlers(tunnels: Tunnels, *, verify: Verify | None = None,
                     run: Runner = run_check, reverify_after: float = DEFAULT_MAX_AGE,
                     report: Report | None = None,
                     address_policy: AddressPolicy | None = None) -> dict[str, CommandHandler]:
    """``OpenSession`` and ``CloseSession`` over ``tunnels``.

    The device's IP is first put to ``address_policy`` (default: the production rules)
    narrowed by the identity payload's ``site_subnets`` (the portal's list), on the first
    check and on every re-check: a refused IP gets no packet at all. The device check is
    ``run`` (:func:`ewsgate.agent.device_check.run_check`: identity and
    pins); the session then gets a :class:`~ewsgate.agent.device_gate.DeviceGate` that runs it
    again on every tunnel reconnect and before a device connection once the last check is
    older than ``reverify_after`` seconds, and calls ``report`` when it fails. ``verify``
    replaces the whole check with a VerifyDevice-style handler (no re-verification then).
    """
    base = address_policy if address_policy is not None else AddressPolicy()

    def guard(policy: AddressPolicy) -> Runner:
        async def guarded(check: DeviceCheck) -> CheckOutcome:
            refused = refused_by(policy, check.request.ip)
            return refused if refused is not None else await run(check)

        return guarded

    async def first_check(ctx: CommandContext, identity: dict[str, Any], session_id: str
                          ) -> tuple[dict[str, Any], DeviceGate | None]:
        if verify is not None:
            return await verify(replace(ctx, payload=identity)), None
        # the agent's policy narrowed by the portal's site subnets, for this session's checks
        policy = policy_for(identity, base)
        guarded = guard(policy)
        refused = refused_by(policy, str(identity.get("ip", "")))
        if refused is not None:
            return refused.as_payload(), None
        try:
            check = DeviceCheck.from_payload(identity)
        except (TypeError, ValueError) as exc:
            raise CommandFailure(getattr(exc, "code", None) or "bad_payload",
                                 f"OpenSession identity: {exc}") from None
        outcome = await guarded(check)
        gate = (DeviceGate(check, session_id=session_id, run=guarded, max_age=reverify_after,
                           on_lost=report, checked=outcome) if outcome.verified else None)
        return outcome.as_payload(), gate

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
        result, gate = await first_check(ctx, identity, spec.session_id)
        if gate is not None:
            spec = replace(spec, gate=gate)
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
        # what the check saw, so that the portal pins it at the first verified session
        return {"status": "ready", "session_id": spec.session_id,
                "identity": {k: result.get(k) for k in ("result", "code", "detail",
                                                         "seen_mac", "seen_serial", "pins")}}

    async def close_session(ctx: CommandContext) -> dict[str, Any]:
        session_id = str(ctx.payload.get("session_id") or "")
        if not session_id:
            raise CommandFailure("bad_payload", "CloseSession needs a session_id")
        reason = str(ctx.payload.get("reason") or "the portal ended the session")
        return {"closed": await tunnels.close_session(session_id, reason)}

    return {"OpenSession": open_session, "CloseSession": close_session}
