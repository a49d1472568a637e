"""SNMP answers whose source is not the target address and port are dropped.

The attacker is a host on the customer's LAN that sees the agent's request to the device and
answers it first, from its own address, with a genuine response (right request id, the
recorded serial). Here the device's address is ``127.0.0.3``: a forwarder there passes each
request to a real simulated printer and sends the printer's genuine answer back to the agent
either from ``127.0.0.3`` itself (the control: verified) or from ``127.0.0.2`` / another port
of ``127.0.0.3`` (the attack: nothing counts as an answer, the check is *unknown*).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ewsgate.agent.identity import IdentityRequest, SnmpSettings, check_identity
from ewsgate.agent.snmp.client import SnmpClient
from ewsgate.agent.snmp.neighbours import StaticNeighbourTable
from ewsgate.agent.snmp.transport import PeerTransports, same_peer
from ewsgate.config import HostPort

from .conftest import MAC, SERIAL, StartSim

pytestmark = pytest.mark.integration
NO_ARP = StaticNeighbourTable({})
DEVICE_IP = "127.0.0.3"


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Any) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram(data, addr)


class Forwarder:
    """Listens at the device's address; answers with the real printer's reply, sent from
    ``reply_from`` (``"device"``: the device's own socket, else a rogue socket)."""

    def __init__(self, printer: tuple[str, int]) -> None:
        self.printer = printer
        self.agent_addr: tuple[str, int] | None = None
        self.device: _Endpoint | None = None
        self.upstream: _Endpoint | None = None
        self.rogue: _Endpoint | None = None
        self.reply_from = "device"
        self.forwarded = 0

    async def start(self, rogue_ip: str) -> int:
        loop = asyncio.get_running_loop()
        _, self.device = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._from_agent), local_addr=(DEVICE_IP, 0))
        _, self.upstream = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._from_printer), local_addr=("127.0.0.1", 0))
        _, self.rogue = await loop.create_datagram_endpoint(
            lambda: _Endpoint(lambda *_: None), local_addr=(rogue_ip, 0))
        assert self.device.transport is not None
        return int(self.device.transport.get_extra_info("sockname")[1])

    def _from_agent(self, data: bytes, addr: tuple[str, int]) -> None:
        self.agent_addr = addr
        assert self.upstream is not None and self.upstream.transport is not None
        self.upstream.transport.sendto(data, self.printer)

    def _from_printer(self, data: bytes, _addr: tuple[str, int]) -> None:
        sender = self.device if self.reply_from == "device" else self.rogue
        assert sender is not None and sender.transport is not None
        assert self.agent_addr is not None
        self.forwarded += 1
        sender.transport.sendto(data, self.agent_addr)

    def close(self) -> None:
        for end in (self.device, self.upstream, self.rogue):
            if end is not None and end.transport is not None:
                end.transport.close()


@pytest.fixture
async def forwarders() -> AsyncIterator[list[Forwarder]]:
    made: list[Forwarder] = []
    yield made
    for forwarder in made:
        forwarder.close()


async def _check(port: int, client: SnmpClient, *, timeout: float, retries: int) -> Any:
    request = IdentityRequest(ip=DEVICE_IP, method="serial", make="HP",
                              expected_serial=SERIAL,
                              snmp=SnmpSettings(version="2c", port=port, retries=retries),
                              timeout=timeout)
    return await check_identity(request, arp_table=NO_ARP, snmp_client=client)


@pytest.mark.parametrize("rogue_ip", ["127.0.0.2", DEVICE_IP])
async def test_answer_from_another_address_or_port_is_not_an_answer(
        rogue_ip: str, start_sim: StartSim, snmp_client: SnmpClient,
        forwarders: list[Forwarder]) -> None:
    """A genuine response with the recorded serial, sent from 127.0.0.2 (or from another port
    of the device's address), does not verify the device; the same response from the
    device's address and port does."""
    sim = await start_sim(profile="hp", listen=HostPort("127.0.0.1", 0), mac=MAC)
    forwarder = Forwarder((sim.address.host, sim.address.port))
    forwarders.append(forwarder)
    port = await forwarder.start(rogue_ip)

    forwarder.reply_from = "device"
    honest = await _check(port, snmp_client, timeout=4.0, retries=1)
    assert honest.result == "verified", honest.detail

    forwarder.reply_from = "rogue"
    before = forwarder.forwarded
    spoofed = await _check(port, snmp_client, timeout=1.5, retries=1)
    assert forwarder.forwarded > before, "the rogue answer was never sent"
    assert spoofed.result == "unknown", spoofed.detail
    assert spoofed.code == "snmp_no_answer"
    assert spoofed.seen_serial is None


def test_same_peer_compares_address_and_port() -> None:
    assert same_peer(("127.0.0.3", 161), "127.0.0.3", 161)
    assert same_peer(("::1", 161, 0, 0), "::1", 161)
    assert same_peer(("fe80::1%eth0", 161, 0, 2), "fe80::1", 161)
    assert not same_peer(("127.0.0.2", 161), "127.0.0.3", 161)
    assert not same_peer(("127.0.0.3", 162), "127.0.0.3", 161)
    assert not same_peer(("not an ip", 161), "127.0.0.3", 161)
    assert not same_peer((), "127.0.0.3", 161)


async def test_transport_drops_a_datagram_from_another_source_itself() -> None:
    """Besides the kernel's filter on the connected socket, the transport checks ``addr``
    and never hands a foreign datagram to pysnmp."""
    from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

    engine = SnmpEngine()
    peers = PeerTransports()
    try:
        await peers.ensure(engine, "127.0.0.3", 16100)
        transport = peers.get("127.0.0.3", 16100)
        assert transport is not None
        delivered: list[bytes] = []
        transport.unregister_callback()
        transport.register_callback(lambda _t, _a, data: delivered.append(data))
        transport.datagram_received(b"spoofed", ("127.0.0.2", 16100))
        transport.datagram_received(b"wrong port", ("127.0.0.3", 16101))
        transport.datagram_received(b"genuine", ("127.0.0.3", 16100))
        await asyncio.sleep(0)
        assert transport.dropped == 2
        assert delivered == [b"genuine"]
    finally:
        peers.close(engine)
        engine.close_dispatcher()


async def test_connected_sockets_are_bounded() -> None:
    from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

    engine = SnmpEngine()
    peers = PeerTransports(max_peers=3)
    try:
        for last in range(10, 16):
            await peers.ensure(engine, f"127.0.0.{last}", 161)
        assert [peers.get(f"127.0.0.{n}", 161) is not None for n in range(10, 16)] == \
            [False, False, False, True, True, True]
        assert peers.domain("127.0.0.10", 161) == peers.domain("127.0.0.10", 161)
    finally:
        peers.close(engine)
        engine.close_dispatcher()


async def test_concurrent_checks_of_one_device_share_one_socket() -> None:
    """Several sessions of one device resumed at once (an agent restart) open its socket
    together: one registration, no 'transport already registered' crash."""
    from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

    engine = SnmpEngine()
    peers = PeerTransports()
    try:
        domains = await asyncio.gather(*(peers.ensure(engine, "127.0.0.20", 161)
                                         for _ in range(5)))
        assert len(set(domains)) == 1
        assert peers.get("127.0.0.20", 161) is not None
    finally:
        peers.close(engine)
        engine.close_dispatcher()
