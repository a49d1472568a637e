"""The agent's command handlers, by kind, for the control stream.

A handler is ``async def handler(ctx: CommandContext) -> dict`` (see
:mod:`ewsgate.agent.control_client`): it reads ``ctx.payload`` (a JSON object), may call
``ctx.progress(stage, detail)``, and returns the result object or raises ``CommandFailure``.
Other parts add their kinds with :func:`register` or by passing more handlers to
:func:`default_handlers` (e.g. the tunnel's ``OpenSession`` / ``CloseSession``).

``VerifyDevice`` payload (built by the portal from the device record)::

    {"device_id": 7, "ip": "10.0.0.5", "method": "mac" | "serial", "make": "hp",
     "expected_mac": "aa:bb:cc:dd:ee:ff", "expected_serial": "CNBRM5K0QZ",
     "ews_port": 80, "timeout": 4.0,
     "snmp": {"version": "2c" | "3" | "off", "port": 161, "community": "public",
              "v3_user": "", "v3_auth_key": "", "v3_priv_key": "",
              "v3_auth_protocol": "SHA", "v3_priv_protocol": "AES"}}

Also ``"pins": {"ews_cert_sha256", "mac"}`` (what the portal pinned; ``null`` values when not
yet) and ``"tls_port"`` (the first HTTPS endpoint, or ``null``); see
:mod:`ewsgate.agent.device_check`.

Result: ``{"result": "verified" | "mismatch" | "unknown", "code", "detail", "seen_mac",
"seen_serial", "method_used", "duration", "pins": {"result", "code", "detail", "learned":
{"ews_cert_sha256", "mac"}} | null}`` — a mismatch is a successful command whose result
says *mismatch*; the portal fails closed on anything but *verified*.

``"site_subnets": ["10.20.0.0/24", ...]`` is the portal's list for the installation (absent or
empty: none); the agent then reaches only addresses inside both it and its own
``--site-subnets`` (the intersection), and a malformed list fails the command with
``bad_site_subnets``.

Before anything is sent, the IP is put to the agent's address policy
(:mod:`ewsgate.agent.address_policy`, narrowed by ``site_subnets``); a refused IP gets
``result: unknown`` with the policy's code (``address.metadata``, ``address.own_host``,
``address.outside_site``, ...) and its sentence ("refused: 169.254.169.254 is the cloud
metadata endpoint; the agent never contacts it; check the device's recorded IP"), and no SNMP
request, ARP priming or TCP connect happens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ewsgate import __version__
from ewsgate.agent.control_client import CommandContext, CommandFailure, CommandHandler

if TYPE_CHECKING:
    from ewsgate.agent.address_policy import AddressPolicy

__all__ = ["default_handlers", "ping", "policy_for", "register", "verify_device",
           "verify_device_handler"]

_EXTRA: dict[str, CommandHandler] = {}


def register(kind: str, handler: CommandHandler) -> None:
    """Add a handler for ``kind`` to every client built by :func:`default_handlers` from now."""
    _EXTRA[kind] = handler


async def ping(ctx: CommandContext) -> dict[str, Any]:
    """``Ping``: answers at once; used by health checks and the benchmark's round trips."""
    return {"pong": True, "agent_version": __version__, "echo": ctx.payload.get("echo")}


async def verify_device(ctx: CommandContext, *,
                        address_policy: AddressPolicy | None = None) -> dict[str, Any]:
    """``VerifyDevice``: after the address policy (default: the production rules) has allowed
    the IP, the SNMP/ARP identity check of :mod:`ewsgate.agent.identity`, then the device's
    pins (:mod:`ewsgate.agent.device_check`)."""
    from ewsgate.agent.device_check import DeviceCheck, refused_by, run_check

    refused = refused_by(policy_for(ctx.payload, address_policy), str(ctx.payload.get("ip", "")))
    if refused is not None:
        return refused.as_payload()
    try:
        check = DeviceCheck.from_payload(ctx.payload)
    except (TypeError, ValueError) as exc:
        raise CommandFailure(getattr(exc, "code", None) or "bad_payload",
                             f"VerifyDevice payload: {exc}") from None
    request = check.request
    ctx.progress("checking", f"checking the identity of {request.ip} by {request.method}")
    return (await run_check(check)).as_payload()


def policy_for(payload: Mapping[str, Any],
               address_policy: AddressPolicy | None = None) -> AddressPolicy:
    """``address_policy`` (default: the production rules) narrowed by the payload's
    ``site_subnets``, the portal's list for the installation; a malformed list fails the
    command (it is never read as "no limit")."""
    from ewsgate.agent.address_policy import AddressPolicy, SiteSubnetError

    policy = address_policy if address_policy is not None else AddressPolicy()
    try:
        return policy.narrowed_by(payload)
    except SiteSubnetError as exc:
        raise CommandFailure("bad_site_subnets", f"the portal's site subnets for this "
                             f"installation cannot be used, so nothing was sent: {exc}") from None


def verify_device_handler(address_policy: AddressPolicy) -> CommandHandler:
    """:func:`verify_device` bound to ``address_policy`` (site subnets, test switch)."""

    async def handler(ctx: CommandContext) -> dict[str, Any]:
        return await verify_device(ctx, address_policy=address_policy)

    return handler


def default_handlers(extra: Mapping[str, CommandHandler] | None = None, *,
                     address_policy: AddressPolicy | None = None
                     ) -> dict[str, CommandHandler]:
    """The agent's handlers: Ping, VerifyDevice (under ``address_policy``, default the
    production rules), what was registered, and ``extra``."""
    verify = verify_device if address_policy is None else verify_device_handler(address_policy)
    handlers: dict[str, CommandHandler] = {"Ping": ping, "VerifyDevice": verify}
    handlers.update(_EXTRA)
    handlers.update(extra or {})
    return handlers
