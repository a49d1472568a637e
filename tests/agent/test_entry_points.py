"""The agent's entry points apply the address policy before any packet: VerifyDevice (SNMP and
the priming connect), OpenSession, and the device dialer. Loopback listeners stand in for a
device at a forbidden address and count what reaches them (no namespace needed; the
namespace test counts frames for every other forbidden address)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ewsgate.agent.address_policy import (
    ALLOW_LOOPBACK_FOR_TESTS,
    AddressPolicy,
    HostAddresses,
    parse_site_subnets,
)
from ewsgate.agent.commands import default_handlers
from ewsgate.agent.control_client import CommandContext, CommandFailure
from ewsgate.agent.dialer import (
    DestinationRefused,
    DeviceDialer,
    DeviceEndpoint,
    DeviceTarget,
    DialPolicy,
)
from ewsgate.agent.session_commands import session_handlers

MAC = "a0:d3:c1:4a:2b:3c"
HOST = HostAddresses(addresses=frozenset({ipaddress.ip_address("10.9.0.1"),
                                          ipaddress.ip_address("127.0.0.1")}))


def ctx(kind: str, payload: dict[str, Any]) -> CommandContext:
    return CommandContext(id="c1", kind=kind, payload=payload,
                          deadline=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30),
                          progress=lambda stage, detail: None)


class Listeners:
    """A UDP port (SNMP) and a TCP port (the web port the priming connects to) on 127.0.0.1."""

    def __init__(self, udp: socket.socket, server: asyncio.Server) -> None:
        self.udp, self.server, self.accepted = udp, server, 0
        self.snmp_port = udp.getsockname()[1]
        self.web_port = server.sockets[0].getsockname()[1]

    def datagrams(self) -> int:
        count = 0
        while True:
            try:
                self.udp.recv(2048)
            except BlockingIOError:
                return count
            count += 1


@pytest.fixture
async def listeners() -> AsyncIterator[Listeners]:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    holder: list[Listeners] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        holder[0].accepted += 1
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    holder.append(Listeners(udp, server))
    yield holder[0]
    server.close()
    await server.wait_closed()
    udp.close()


def identity(ip: str, snmp: str, listeners: Listeners) -> dict[str, Any]:
    return {"ip": ip, "method": "mac", "expected_mac": MAC, "ews_port": listeners.web_port,
            "timeout": 0.6, "snmp": {"version": snmp, "port": listeners.snmp_port}}


@pytest.mark.parametrize("snmp", ["2c", "off"])
async def test_verify_device_refuses_loopback_before_snmp_or_priming(
        listeners: Listeners, snmp: str) -> None:
    verify = default_handlers(address_policy=AddressPolicy(host_addresses=lambda: HOST))
    result = await verify["VerifyDevice"](ctx("VerifyDevice", identity("127.0.0.1", snmp,
                                                                      listeners)))
    assert result["result"] == "unknown" and result["code"] == "address.loopback"
    assert result["detail"].startswith("refused: 127.0.0.1 is a loopback address")
    await asyncio.sleep(0.2)
    assert listeners.datagrams() == 0 and listeners.accepted == 0


async def test_the_default_handlers_use_the_production_rules(listeners: Listeners) -> None:
    result = await default_handlers()["VerifyDevice"](
        ctx("VerifyDevice", identity("127.0.0.1", "off", listeners)))
    assert result["code"] == "address.loopback" and listeners.accepted == 0


async def test_with_the_test_switch_the_same_check_does_reach_loopback(
        listeners: Listeners) -> None:
    """The listeners count: with loopback allowed, SNMP and the priming arrive."""
    policy = AddressPolicy(host_addresses=lambda: HOST, allow_loopback=ALLOW_LOOPBACK_FOR_TESTS)
    verify = default_handlers(address_policy=policy)["VerifyDevice"]
    # a budget long enough for the SNMP engine's first start on this event loop
    snmp = await verify(ctx("VerifyDevice", {**identity("127.0.0.1", "2c", listeners),
                                             "timeout": 3.0}))
    assert snmp["code"] == "snmp_no_answer"
    assert listeners.datagrams() > 0
    off = await verify(ctx("VerifyDevice", identity("127.0.0.1", "off", listeners)))
    assert off["code"] == "no_mac"
    await asyncio.sleep(0.1)
    assert listeners.accepted >= 1


class NoTunnels:
    def __init__(self) -> None:
        self.opened: list[Any] = []

    async def open_session(self, spec: Any) -> Any:
        self.opened.append(spec)

    async def close_session(self, session_id: str, reason: str = "") -> bool:
        return False


@pytest.mark.parametrize(("ip", "code", "words"), [
    ("169.254.169.254", "address.metadata",
     "refused: 169.254.169.254 is the cloud metadata endpoint; the agent never contacts it; "
     "check the device's recorded IP"),
    ("10.9.0.1", "address.own_host", "refused: 10.9.0.1 is an address of the agent's own host"),
    ("10.30.0.7", "address.outside_site", "outside this installation's site subnets"),
])
async def test_open_session_fails_with_the_refusal_and_opens_no_tunnel(
        listeners: Listeners, ip: str, code: str, words: str) -> None:
    policy = AddressPolicy(host_addresses=lambda: HOST,
                           site_subnets=parse_site_subnets("10.9.0.0/24"))
    tunnels = NoTunnels()
    with pytest.raises(CommandFailure) as failure:
        await session_handlers(tunnels, address_policy=policy)["OpenSession"](
            ctx("OpenSession", {
                "session_id": "s1", "expires_at_unix_ms": 2**41, "ticket": "t",
                "relay": {"tunnel_address": "127.0.0.1:9"},
                "device": {"ip": ip, "endpoints": [{"scheme": "http", "port": 80}]},
                "identity": identity(ip, "2c", listeners)}))
    assert failure.value.code == code and words in str(failure.value)
    assert tunnels.opened == []


def test_the_dialer_obeys_site_subnets_and_the_own_host_rule() -> None:
    policy = DialPolicy(addresses=AddressPolicy(host_addresses=lambda: HOST,
                                                site_subnets=parse_site_subnets("10.9.0.0/24")))
    endpoints = (DeviceEndpoint("http", 80),)
    assert DeviceDialer(DeviceTarget(ip="10.9.0.5", endpoints=endpoints), policy)
    for ip, words in [("10.30.0.7", "outside this installation's site subnets"),
                      ("10.9.0.1", "agent's own host"), ("fd00:ec2::254", "metadata")]:
        with pytest.raises(DestinationRefused, match=words):
            DeviceDialer(DeviceTarget(ip=ip, endpoints=endpoints), policy)
        assert words in policy.refused_log[-1]


def test_the_dial_policys_test_switch_adds_loopback_only() -> None:
    policy = DialPolicy(allow_loopback=ALLOW_LOOPBACK_FOR_TESTS,
                        addresses=AddressPolicy(host_addresses=lambda: HOST))
    assert policy.address_policy.check("127.0.0.1") is None
    assert policy.address_policy.check("10.9.0.1") is not None
    assert policy.address_policy.check("169.254.169.254") is not None
