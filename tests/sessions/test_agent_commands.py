"""The agent's OpenSession / CloseSession handlers against the portal's real payload.

The payload comes from the portal's session service (through the scripted hub of rt_world);
the identity check and the tunnel client are stand-ins here (their own tests use SNMP and TLS):
what is tested is the contract between the two sides and the fail-closed order.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ewsgate.agent.control_client import CommandContext, CommandFailure
from ewsgate.agent.session_commands import session_handlers
from ewsgate.agent.tunnel_client import SessionSpec
from ewsgate.aio.errors import TunnelError
from ewsgate.tunnel import ErrorCode
from sessions.rt_world import RtWorld, settle


class FakeTunnels:
    def __init__(self, fail: Exception | None = None) -> None:
        self.opened: list[SessionSpec] = []
        self.closed: list[tuple[str, str]] = []
        self.fail = fail

    async def open_session(self, spec: SessionSpec) -> Any:
        if self.fail is not None:
            raise self.fail
        self.opened.append(spec)
        return object()

    async def close_session(self, session_id: str, reason: str = "") -> bool:
        self.closed.append((session_id, reason))
        return True


def _ctx(payload: dict[str, Any], stages: list[str], kind: str = "OpenSession"
         ) -> CommandContext:
    return CommandContext(id="c1", kind=kind, payload=payload,
                          deadline=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30),
                          progress=lambda stage, detail: stages.append(stage))


async def _payload(rt: RtWorld) -> dict[str, Any]:
    await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await settle(rt)
    return next(c.payload for c in rt.hub.sent if c.kind == "OpenSession")


def _verify(result: str, seen: list[dict[str, Any]] | None = None):
    async def verify(ctx: CommandContext) -> dict[str, Any]:
        if seen is not None:
            seen.append(ctx.payload)
        return {"result": result, "code": "verified" if result == "verified" else "mac_mismatch",
                "detail": "device identity mismatch at 192.0.2.10: expected MAC "
                          "00:1b:a9:00:00:01, found 00:11:22:33:44:55"}
    return verify


@pytest.mark.db
async def test_verified_device_gets_a_tunnel_with_the_portals_ticket(rt: RtWorld) -> None:
    payload = await _payload(rt)
    tunnels, seen, stages = FakeTunnels(), [], []
    handlers = session_handlers(tunnels, verify=_verify("verified", seen))
    result = await handlers["OpenSession"](_ctx(payload, stages))
    assert result == {"status": "ready", "session_id": payload["session_id"],
                      "identity": {"result": "verified", "code": "verified",
                                   "detail": "device identity mismatch at 192.0.2.10: expected "
                                             "MAC 00:1b:a9:00:00:01, found 00:11:22:33:44:55",
                                   "seen_mac": None, "seen_serial": None, "pins": None}}
    assert seen == [payload["identity"]]
    assert stages == ["verifying", "connecting", "ready"]
    [spec] = tunnels.opened
    assert (spec.relay_host, spec.relay_port) == ("127.0.0.1", 8444)
    assert spec.ticket == payload["ticket"] and spec.device.ip == "192.0.2.10"
    assert [(e.scheme, e.port) for e in spec.device.endpoints] == [("http", 80), ("https", 443)]
    assert spec.expires_at == payload["expires_at_unix_ms"] / 1000


@pytest.mark.db
async def test_mismatch_fails_closed_and_nothing_is_dialled(rt: RtWorld) -> None:
    payload = await _payload(rt)
    tunnels = FakeTunnels()
    handlers = session_handlers(tunnels, verify=_verify("mismatch"))
    with pytest.raises(CommandFailure) as info:
        await handlers["OpenSession"](_ctx(payload, []))
    assert info.value.code == "mac_mismatch" and "expected MAC" in str(info.value)
    assert tunnels.opened == []


@pytest.mark.db
async def test_identity_for_another_ip_than_the_tunnel_is_refused(rt: RtWorld) -> None:
    payload = await _payload(rt)
    payload["identity"] = {**payload["identity"], "ip": "192.0.2.99"}
    tunnels = FakeTunnels()
    with pytest.raises(CommandFailure) as info:
        await session_handlers(tunnels, verify=_verify("verified"))["OpenSession"](
            _ctx(payload, []))
    assert info.value.code == "bad_payload" and tunnels.opened == []


@pytest.mark.db
async def test_relay_refusal_fails_the_command(rt: RtWorld) -> None:
    payload = await _payload(rt)
    tunnels = FakeTunnels(TunnelError("ticket refused", ErrorCode.TICKET_REFUSED))
    with pytest.raises(CommandFailure) as info:
        await session_handlers(tunnels, verify=_verify("verified"))["OpenSession"](
            _ctx(payload, []))
    assert info.value.code == "tunnel_ticket_refused"


@pytest.mark.parametrize("broken", [{}, {"session_id": "x"},
                                    {"session_id": "x", "relay": {"tunnel_address": "nope"}}])
async def test_malformed_payload_is_refused(broken: dict[str, Any]) -> None:
    with pytest.raises(CommandFailure) as info:
        await session_handlers(FakeTunnels(), verify=_verify("verified"))["OpenSession"](
            _ctx(broken, []))
    assert info.value.code == "bad_payload"


async def test_close_session_ends_the_tunnel() -> None:
    tunnels = FakeTunnels()
    result = await session_handlers(tunnels)["CloseSession"](
        _ctx({"session_id": "abc", "reason": "ended by its owner"}, [], "CloseSession"))
    assert result == {"closed": True}
    assert tunnels.closed == [("abc", "ended by its owner")]
