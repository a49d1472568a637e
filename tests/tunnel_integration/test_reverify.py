"""Re-verification during a session: on every tunnel reconnect, and before a new device
connection once the last check is stale. The device check is the real one (SNMP over UDP to
a simulated printer); the attack is another host taking over the device's address mid-session
(here: the printer is replaced, on the same address and port, by one with another serial)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from ewsgate.agent.device_check import CheckOutcome, DeviceCheck, run_check
from ewsgate.agent.device_gate import DeviceGate, IdentityLost
from ewsgate.agent.identity import IdentityRequest, SnmpSettings
from ewsgate.agent.snmp.client import SnmpClient
from ewsgate.agent.snmp.neighbours import StaticNeighbourTable
from ewsgate.agent.tunnel_client import SessionState
from ewsgate.config import HostPort
from ewsgate.devicesim.snmp_agent import SnmpAgentConfig, SnmpAgentHandle, serve_snmp
from ewsgate.relay.clock import ManualClock
from ewsgate.relay.upstream import UpstreamUnavailable
from ewsgate.tunnel import ErrorCode

from .conftest import World, http_get

pytestmark = pytest.mark.integration
SERIAL = "CNBRM5K0QZ"
NO_ARP = StaticNeighbourTable({})


class Site:
    """A printer at 127.0.0.1:<port> that can be swapped for another host on that address."""

    def __init__(self) -> None:
        self.handle: SnmpAgentHandle | None = None
        self.port = 0

    async def start(self, serial: str) -> None:
        self.handle = await serve_snmp(SnmpAgentConfig(
            listen=HostPort("127.0.0.1", self.port), profile="hp", serial=serial,
            mac="a0:d3:c1:4a:2b:3c"))
        self.port = self.handle.address.port

    async def swap(self, serial: str) -> None:
        assert self.handle is not None
        self.handle.close()
        await self.handle.wait_closed()
        await self.start(serial)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    printer = Site()
    await printer.start(SERIAL)
    yield printer
    printer.close()


@pytest.fixture
async def snmp() -> AsyncIterator[SnmpClient]:
    client = SnmpClient()
    yield client
    client.close()


async def _gate(site: Site, snmp: SnmpClient, session_id: str, reports: list[tuple[str, ...]],
                clock: ManualClock | None = None) -> DeviceGate:
    check = DeviceCheck(request=IdentityRequest(
        ip="127.0.0.1", method="serial", make="HP", expected_serial=SERIAL,
        snmp=SnmpSettings(version="2c", port=site.port, retries=1), timeout=4.0))

    async def run(c: DeviceCheck) -> CheckOutcome:
        return await run_check(c, arp_table=NO_ARP, snmp_client=snmp)

    first = await run(check)
    assert first.verified, first.detail
    return DeviceGate(check, session_id=session_id, run=run, max_age=5.0,
                      clock=(clock.now if clock else asyncio.get_running_loop().time),
                      on_lost=lambda *args: reports.append(args), checked=first)


async def _reconnected(world: World, session_id: str, old: object) -> object:
    async with asyncio.timeout(10):
        while (again := world.registry.tunnel(session_id)) is None or again is old:
            await asyncio.sleep(0.05)
    return again


async def test_every_tunnel_reconnect_re_verifies_and_a_new_host_ends_the_session(
        world: World, site: Site, snmp: SnmpClient) -> None:
    reports: list[tuple[str, ...]] = []
    spec = world.spec()
    gate = await _gate(site, snmp, spec.session_id, reports)
    session = await world.client().open_session(replace(spec, gate=gate))
    assert gate.runs == 0  # the check before the session counts as the first

    live = world.registry.tunnel(spec.session_id)
    assert live is not None
    live.connection.abort(ErrorCode.INTERNAL_ERROR, "network blip")
    live = await _reconnected(world, spec.session_id, live)
    assert gate.runs == 1 and session.state is SessionState.CONNECTED  # same device: admitted

    await site.swap("ROGUE00001")  # another host now answers at the device's address
    live.connection.abort(ErrorCode.INTERNAL_ERROR, "network blip")  # type: ignore[attr-defined]
    await asyncio.wait_for(asyncio.shield(session.ended), 10)
    assert session.state is SessionState.FAILED
    assert "tunnel reconnect" in session.reason and "ROGUE00001" in session.reason
    assert gate.runs == 2
    [(session_id, code, detail)] = reports
    assert (session_id, code) == (spec.session_id, "serial_mismatch")
    assert f"expected serial {SERIAL}, found ROGUE00001" in detail
    await asyncio.sleep(0.3)
    assert world.registry.tunnel(spec.session_id) is None  # it never came back


async def test_a_stale_check_is_redone_before_a_new_device_connection(
        world: World, site: Site, snmp: SnmpClient) -> None:
    reports: list[tuple[str, ...]] = []
    clock = ManualClock()
    spec = world.spec()
    gate = await _gate(site, snmp, spec.session_id, reports, clock)
    session = await world.client().open_session(replace(spec, gate=gate))
    stream = await world.registry.open_tunnel_stream(spec.session_id, 0)
    await http_get(stream, "/")
    assert gate.runs == 0  # fresh: no check

    clock.advance(6)  # older than max_age: checked again, same device, served
    stream = await world.registry.open_tunnel_stream(spec.session_id, 0)
    await http_get(stream, "/")
    assert gate.runs == 1

    stream = await world.registry.open_tunnel_stream(spec.session_id, 0)
    await http_get(stream, "/")
    assert gate.runs == 1  # fresh again

    await site.swap("ROGUE00002")
    clock.advance(6)
    with pytest.raises(UpstreamUnavailable, match="ROGUE00002"):
        await world.registry.open_stream(spec.session_id, 0)
    await asyncio.wait_for(asyncio.shield(session.ended), 5)
    assert session.state is SessionState.FAILED
    assert [code for _, code, _ in reports] == ["serial_mismatch"]
    assert gate.runs == 2


async def test_concurrent_connections_share_one_re_verification(
        site: Site, snmp: SnmpClient) -> None:
    clock = ManualClock()
    reports: list[tuple[str, ...]] = []
    gate = await _gate(site, snmp, "s-concurrent", reports, clock)
    clock.advance(6)
    await asyncio.gather(*(gate.ensure(force=False, why="new device connection")
                           for _ in range(8)))
    assert gate.runs == 1 and not reports


async def test_a_lost_identity_stays_lost(site: Site, snmp: SnmpClient) -> None:
    reports: list[tuple[str, ...]] = []
    gate = await _gate(site, snmp, "s-lost", reports)
    await site.swap("ROGUE00003")
    for _ in range(2):
        with pytest.raises(IdentityLost, match="ROGUE00003"):
            await gate.ensure(force=True, why="tunnel reconnect")
    await site.swap(SERIAL)  # even if the genuine device answers again
    with pytest.raises(IdentityLost):
        await gate.ensure(force=True, why="tunnel reconnect")
    assert gate.runs == 1 and len(reports) == 1


def test_the_re_verification_age_is_bounded() -> None:
    check = DeviceCheck(request=IdentityRequest(ip="10.0.0.5", method="serial",
                                                expected_serial=SERIAL))
    for bad in (0.5, 3601.0):
        with pytest.raises(ValueError, match="1 to 3600"):
            DeviceGate(check, session_id="s", max_age=bad)


async def test_the_portals_certificate_pin_holds_from_the_first_device_connection(
        world: World, site: Site, snmp: SnmpClient) -> None:
    """The check passed, then the web server at the address changed before the first
    stream: the dialer starts from the pin, so that first stream is already refused, and the
    session ends with the failure reported."""
    from ewsgate.agent.dialer import DeviceEndpoint
    from ewsgate.agent.pins import DevicePins

    from .test_device_tls import _https_device

    impostor = await _https_device(world, "impostor")
    port = impostor.sockets[0].getsockname()[1]
    try:
        reports: list[tuple[str, ...]] = []
        gate = await _gate(site, snmp, "s-pinned", reports)
        gate.check = replace(gate.check, pins=DevicePins(ews_cert_sha256="ab" * 32))
        device = world.device(DeviceEndpoint("https", port))
        spec = replace(world.spec("s-pinned", device=device), gate=gate)
        session = await world.client().open_session(spec)
        with pytest.raises(UpstreamUnavailable, match="ab" * 32):
            await world.registry.open_stream(spec.session_id, 1)
        await asyncio.wait_for(asyncio.shield(session.ended), 5)
        assert session.state is SessionState.FAILED
        assert [code for _, code, _ in reports] == ["cert_pin_mismatch"]
    finally:
        impostor.close()
