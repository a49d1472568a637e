"""The portal's site subnets for an installation narrow the agent's own: the intersection.

Pure rules (:mod:`ewsgate.agent.address_policy`) and the two command handlers that apply them
(``VerifyDevice``, ``OpenSession``) called with the payloads the portal builds; no packet can
leave here (every device address is refused, or the check is a recording stand-in).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ewsgate.agent.address_policy import (
    AddressPolicy,
    HostAddresses,
    SiteSubnetError,
    parse_portal_subnets,
    parse_site_subnets,
)
from ewsgate.agent.commands import verify_device
from ewsgate.agent.control_client import CommandContext, CommandFailure
from ewsgate.agent.device_check import CheckOutcome, DeviceCheck
from ewsgate.agent.device_gate import IdentityLost
from ewsgate.agent.identity import IdentityResult
from ewsgate.agent.session_commands import session_handlers

HOST = HostAddresses(addresses=frozenset({ipaddress.ip_address("10.9.0.1")}))


def policy(site: str = "", portal: str = "") -> AddressPolicy:
    return AddressPolicy(host_addresses=lambda: HOST,
                         site_subnets=parse_site_subnets(site)).narrowed(
        parse_site_subnets(portal))


def test_an_address_must_be_inside_both_lists() -> None:
    both = policy(site="10.20.0.0/16", portal="10.20.5.0/24, 10.30.0.0/24")
    assert both.check("10.20.5.7") is None
    # inside the agent's list, outside the portal's: the portal's list is named
    refusal = both.check("10.20.9.5")
    assert refusal is not None and refusal.code == "address.outside_site"
    assert refusal.message == (
        "refused: 10.20.9.5 is outside the site subnets the portal set for this installation "
        "(10.20.5.0/24, 10.30.0.0/24); the agent never contacts it; check the device's recorded "
        "IP, or add its subnet to the installation's site subnets on the portal")
    # inside the portal's list, outside the agent's: the portal cannot widen the site's limit
    refusal = both.check("10.30.0.5")
    assert refusal is not None and refusal.code == "address.outside_site"
    assert "outside this installation's site subnets (10.20.0.0/16)" in refusal.message
    assert "--site-subnets" in refusal.message


def test_either_list_alone_confines_and_none_leaves_the_fixed_rules() -> None:
    assert policy(portal="10.20.5.0/24").check("10.20.5.7") is None
    assert policy(portal="10.20.5.0/24").check("10.40.0.1") is not None
    assert policy(site="10.20.5.0/24").check("10.40.0.1") is not None
    assert policy().check("10.40.0.1") is None
    # a portal list never re-opens what the fixed rules or the own-host rule refuse
    wide = policy(portal="10.0.0.0/8")
    for address in ("10.9.0.1", "169.254.169.254", "100.100.100.200", "127.0.0.1"):
        assert wide.check(address) is not None, address
    # the network and broadcast address of a portal subnet are never a device
    for edge in ("10.20.5.0", "10.20.5.255"):
        refusal = policy(portal="10.20.5.0/24").check(edge)
        assert refusal is not None and refusal.code == "address.broadcast", edge


@given(st.integers(0, 2**32 - 1), st.integers(8, 30), st.integers(8, 30))
def test_allowed_only_when_both_lists_allow(value: int, agent_prefix: int,
                                           portal_prefix: int) -> None:
    address = ipaddress.IPv4Address(value)
    agent_net = ipaddress.ip_network(f"10.20.0.0/{agent_prefix}", strict=False)
    portal_net = ipaddress.ip_network(f"10.20.0.0/{portal_prefix}", strict=False)
    base = AddressPolicy(host_addresses=lambda: HostAddresses())
    alone_agent = AddressPolicy(host_addresses=lambda: HostAddresses(),
                                site_subnets=(agent_net,))
    both = alone_agent.narrowed((portal_net,))
    alone_portal = base.narrowed((portal_net,))
    allowed = both.check(address) is None
    assert allowed == (alone_agent.check(address) is None and
                       alone_portal.check(address) is None)


@pytest.mark.parametrize("value", [
    "10.20.0.0/24",  # a string, not a list
    [1, 2],
    ["10.20.0.5/24"],  # host bits
    ["127.0.0.0/8"],  # a range the agent never reaches
    ["printers"],
])
def test_a_malformed_portal_list_is_an_error_never_no_limit(value: Any) -> None:
    with pytest.raises(SiteSubnetError):
        parse_portal_subnets(value)


def test_absent_or_empty_portal_list_is_no_limit() -> None:
    assert parse_portal_subnets(None) == ()
    assert parse_portal_subnets([]) == ()


def ctx(payload: dict[str, Any]) -> CommandContext:
    return CommandContext(id="c1", kind="VerifyDevice", payload=payload,
                          deadline=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5),
                          progress=lambda stage, detail: None)


def identity(ip: str, site_subnets: Any) -> dict[str, Any]:
    return {"device_id": 1, "ip": ip, "method": "serial", "make": "hp",
            "expected_serial": "CNBRM5K0QZ", "timeout": 1.0,
            "snmp": {"version": "2c", "port": 161, "community": "public"},
            "site_subnets": site_subnets}


async def test_verify_device_refuses_outside_the_portal_list_before_any_check() -> None:
    result = await verify_device(ctx(identity("10.40.0.5", ["10.20.5.0/24"])),
                                 address_policy=policy())
    assert result["result"] == "unknown" and result["code"] == "address.outside_site"
    assert "the site subnets the portal set for this installation" in result["detail"]


async def test_verify_device_fails_on_a_malformed_portal_list() -> None:
    with pytest.raises(CommandFailure) as caught:
        await verify_device(ctx(identity("10.40.0.5", "10.20.5.0/24")), address_policy=policy())
    assert caught.value.code == "bad_site_subnets"
    assert "nothing was sent" in str(caught.value)


class RecordingTunnels:
    def __init__(self) -> None:
        self.opened: list[Any] = []

    async def open_session(self, spec: Any) -> Any:
        self.opened.append(spec)

    async def close_session(self, session_id: str, reason: str = "") -> bool:
        return False


def open_payload(ip: str, site_subnets: Any) -> dict[str, Any]:
    return {"session_id": "s1", "expires_at_unix_ms": 4_000_000_000_000,
            "device": {"ip": ip, "endpoints": [{"scheme": "http", "port": 80}]},
            "identity": identity(ip, site_subnets),
            "relay": {"id": "1", "name": "r", "tunnel_address": "127.0.0.1:9"},
            "ticket": "t"}


async def test_open_session_checks_and_rechecks_under_the_portal_list() -> None:
    """The first check and the session's re-checks run under the narrowed policy: a device
    inside both lists is checked (by the stand-in), one outside the portal's is not."""
    checked: list[str] = []

    async def run(check: DeviceCheck) -> CheckOutcome:
        checked.append(check.request.ip)
        return CheckOutcome(result="verified", code="verified", detail="verified",
                            identity=IdentityResult(result="verified", detail="verified",
                                                    code="verified"))

    tunnels = RecordingTunnels()
    handlers = session_handlers(tunnels, run=run, address_policy=policy(site="10.20.0.0/16"))
    with pytest.raises(CommandFailure) as caught:
        await handlers["OpenSession"](ctx(open_payload("10.20.9.5", ["10.20.5.0/24"])))
    assert caught.value.code == "address.outside_site" and checked == [] and not tunnels.opened
    await handlers["OpenSession"](ctx(open_payload("10.20.5.7", ["10.20.5.0/24"])))
    assert checked == ["10.20.5.7"] and len(tunnels.opened) == 1
    gate = tunnels.opened[0].gate
    assert gate is not None
    # the session's re-checks run under the same narrowed policy
    await gate.ensure(force=True, why="tunnel reconnect")
    assert checked == ["10.20.5.7", "10.20.5.7"]
    gate.check = replace(gate.check, request=replace(gate.check.request, ip="10.20.9.5"))
    with pytest.raises(IdentityLost) as lost:
        await gate.ensure(force=True, why="tunnel reconnect")
    assert lost.value.identity_code == "address.outside_site"
    assert checked == ["10.20.5.7", "10.20.5.7"]


def test_the_loopback_test_switch_does_not_lift_the_site_subnets() -> None:
    from ewsgate.agent.address_policy import ALLOW_LOOPBACK_FOR_TESTS

    switched = AddressPolicy(host_addresses=lambda: HOST, allow_loopback=ALLOW_LOOPBACK_FOR_TESTS)
    assert switched.check("127.0.0.1") is None
    for narrowed in (switched.narrowed(parse_site_subnets("10.20.0.0/24")),
                     AddressPolicy(host_addresses=lambda: HOST,
                                   allow_loopback=ALLOW_LOOPBACK_FOR_TESTS,
                                   site_subnets=parse_site_subnets("10.20.0.0/24"))):
        refusal = narrowed.check("127.0.0.1")
        assert refusal is not None and refusal.code == "address.outside_site"
