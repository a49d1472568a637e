"""check_identity against the simulated printer's real SNMP agent over UDP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path

import pytest

from ewsgate.agent.identity import (
    IdentityRequest,
    IdentityRequestError,
    SnmpSettings,
    check_identity,
)
from ewsgate.agent.netlink import NUD_FAILED, NUD_REACHABLE, NeighbourRecord, NetlinkError
from ewsgate.agent.snmp.client import SnmpClient, SnmpSettingsError
from ewsgate.agent.snmp.neighbours import StaticNeighbourTable, SystemNeighbourTable

from .conftest import MAC, SERIAL, V3, StartSim

pytestmark = pytest.mark.integration

NO_ARP = StaticNeighbourTable({})
V3_SETTINGS = {"version": "3", **V3}


def v2c(port: int, **extra: object) -> SnmpSettings:
    return SnmpSettings(port=port, **extra)  # type: ignore[arg-type]


async def test_match_by_mac_follows_ip_addr_table_to_the_chosen_if_index(
        start_sim: StartSim, snmp_client: SnmpClient) -> None:
    sim = await start_sim(profile="hp", if_index=7)
    result = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="mac", expected_mac="A0-D3-C1-4A-2B-3C",
                        snmp=v2c(sim.address.port)),
        arp_table=NO_ARP, snmp_client=snmp_client)
    assert result.result == "verified", result.detail
    assert result.verified and result.code == "verified"
    assert result.method_used == "snmp"
    assert result.seen_mac == MAC
    assert result.seen_serial == SERIAL  # what was seen is reported for the device's record
    assert "ifPhysAddress.7" in result.detail
    assert result.duration > 0


async def test_mac_mismatch_fails_closed_and_says_what_was_found(
        start_sim: StartSim, snmp_client: SnmpClient) -> None:
    sim = await start_sim(profile="ricoh", mac="3c:2a:f4:00:11:22")
    result = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="mac", expected_mac=MAC,
                        snmp=v2c(sim.address.port)),
        arp_table=StaticNeighbourTable({"127.0.0.1": MAC}), snmp_client=snmp_client)
    assert result.result == "mismatch"
    assert result.code == "mac_mismatch"
    assert result.seen_mac == "3c:2a:f4:00:11:22"
    assert result.method_used == "snmp"  # SNMP answered: the neighbour table is not consulted
    assert result.detail.startswith(
        f"device identity mismatch at 127.0.0.1: expected MAC {MAC}, found 3c:2a:f4:00:11:22")
    assert "check the device's IP in the portal" in result.detail


async def test_device_without_ip_addr_table_verifies_by_any_interface_mac(
        start_sim: StartSim, snmp_client: SnmpClient) -> None:
    sim = await start_sim(profile="brother", ip_addr_table=False, if_index=5)
    request = IdentityRequest(ip="127.0.0.1", method="mac", expected_mac=MAC,
                              snmp=v2c(sim.address.port))
    result = await check_identity(request, arp_table=NO_ARP, snmp_client=snmp_client)
    assert result.result == "verified", result.detail
    assert "ifPhysAddress.5" in result.detail and "any interface" in result.detail

    other = IdentityRequest(ip="127.0.0.1", method="mac", expected_mac="02:00:00:00:00:01",
                            snmp=v2c(sim.address.port))
    result = await check_identity(other, arp_table=NO_ARP, snmp_client=snmp_client)
    assert result.result == "mismatch" and result.seen_mac == MAC


VENDOR_OID_PROFILES = ["hp", "ricoh", "kyocera", "canon", "brother", "lexmark"]


@pytest.mark.parametrize("profile", VENDOR_OID_PROFILES)
async def test_match_by_serial_from_the_vendor_oid(
        profile: str, start_sim: StartSim, snmp_client: SnmpClient) -> None:
    """Printer-MIB is switched off, so only the vendor's own OID can verify."""
    serial = f"{profile.upper()}12345X"
    sim = await start_sim(profile=profile, serial=serial, printer_mib_serial=False)
    result = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="serial", make=profile,
                        expected_serial=serial.lower(), snmp=v2c(sim.address.port)),
        arp_table=NO_ARP, snmp_client=snmp_client)
    assert result.result == "verified", result.detail
    assert result.seen_serial == serial
    assert f"{profile} serial OID" in result.detail


@pytest.mark.parametrize("profile", ["xerox", "konica"])
async def test_match_by_serial_from_printer_mib(
        profile: str, start_sim: StartSim, snmp_client: SnmpClient) -> None:
    sim = await start_sim(profile=profile)
    result = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="serial", make=profile, expected_serial=SERIAL,
                        snmp=v2c(sim.address.port)),
        arp_table=NO_ARP, snmp_client=snmp_client)
    assert result.result == "verified", result.detail
    assert "prtGeneralSerialNumber" in result.detail


@pytest.mark.parametrize("encoding", ["nul-padded", "hex-text"])
async def test_hp_hex_encoded_serial_verifies(
        encoding: str, start_sim: StartSim, snmp_client: SnmpClient) -> None:
    sim = await start_sim(profile="hp", printer_mib_serial=False, serial_encoding=encoding)
    raw = sim.table.get((1, 3, 6, 1, 4, 1, 11, 2, 3, 9, 4, 2, 1, 1, 3, 3, 0))
    assert isinstance(raw, bytes) and raw != SERIAL.encode()  # really encoded on the wire
    result = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="serial", make="HP", expected_serial=SERIAL,
                        snmp=v2c(sim.address.port)),
        arp_table=NO_ARP, snmp_client=snmp_client)
    assert result.result == "verified", result.detail
    assert result.seen_serial == SERIAL


async def test_unknown_or_wrong_make_still_finds_the_serial_via_sys_object_id(
        start_sim: StartSim, snmp_client: SnmpClient) -> None:
    sim = await start_sim(profile="kyocera", printer_mib_serial=False)
    for make in ("", "Canon"):
        result = await check_identity(
            IdentityRequest(ip="127.0.0.1", method="serial", make=make, expected_serial=SERIAL,
                            snmp=v2c(sim.address.port)),
            arp_table=NO_ARP, snmp_client=snmp_client)
        assert result.result == "verified", (make, result.detail)


async def test_serial_mismatch_fails_closed(start_sim: StartSim,
                                            snmp_client: SnmpClient) -> None:
    sim = await start_sim(profile="lexmark", serial="LX0000001")
    result = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="serial", make="Lexmark",
                        expected_serial=SERIAL, snmp=v2c(sim.address.port)),
        arp_table=NO_ARP, snmp_client=snmp_client)
    assert result.result == "mismatch" and result.code == "serial_mismatch"
    assert result.seen_serial == "LX0000001"
    assert result.detail.startswith(
        f"device identity mismatch at 127.0.0.1: expected serial {SERIAL}, found LX0000001")


async def test_device_without_any_serial_is_unknown(start_sim: StartSim,
                                                   snmp_client: SnmpClient) -> None:
    sim = await start_sim(profile="xerox", printer_mib_serial=False)
    result = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="serial", make="Xerox", expected_serial=SERIAL,
                        snmp=v2c(sim.address.port)),
        arp_table=NO_ARP, snmp_client=snmp_client)
    assert result.result == "unknown" and result.code == "no_serial"
    assert "reports no serial number" in result.detail


async def test_snmp_silent_falls_back_to_the_neighbour_table(
        silent_udp_port: int, snmp_client: SnmpClient, tmp_path: Path) -> None:
    proc_arp = tmp_path / "arp"
    proc_arp.write_text(
        "IP address       HW type     Flags       HW address            Mask     Device\n"
        f"127.0.0.1        0x1         0x2         {MAC.upper()}     *        eth0\n")
    table = SystemNeighbourTable(proc_path=proc_arp, netlink=None)
    result = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="mac", expected_mac=MAC,
                        snmp=v2c(silent_udp_port), timeout=0.8),
        arp_table=table, snmp_client=snmp_client)
    assert result.result == "verified", result.detail
    assert result.method_used == "arp"
    assert "no SNMP answer" in result.detail


async def test_snmp_silent_and_neighbour_table_mac_differs_is_a_mismatch(
        silent_udp_port: int, snmp_client: SnmpClient) -> None:
    result = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="mac", expected_mac=MAC,
                        snmp=v2c(silent_udp_port), timeout=0.8),
        arp_table=StaticNeighbourTable({"127.0.0.1": "02:00:00:00:00:09"}),
        snmp_client=snmp_client)
    assert result.result == "mismatch" and result.method_used == "arp"
    assert result.seen_mac == "02:00:00:00:00:09"


async def test_snmp_silent_and_no_neighbour_entry_fails_closed(
        silent_udp_port: int, snmp_client: SnmpClient) -> None:
    result = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="mac", expected_mac=MAC,
                        snmp=v2c(silent_udp_port), timeout=0.8),
        arp_table=NO_ARP, snmp_client=snmp_client)
    assert result.result == "unknown" and not result.verified
    assert result.code == "snmp_no_answer"
    assert result.method_used is None and result.seen_mac is None
    assert "no entry for 127.0.0.1" in result.detail


async def test_snmp_silent_serial_check_is_unknown(silent_udp_port: int,
                                                   snmp_client: SnmpClient) -> None:
    result = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="serial", expected_serial=SERIAL,
                        snmp=v2c(silent_udp_port), timeout=0.6),
        arp_table=StaticNeighbourTable({"127.0.0.1": MAC}), snmp_client=snmp_client)
    assert result.result == "unknown" and result.code == "snmp_no_answer"


async def test_wrong_community_is_unknown_with_the_reason(start_sim: StartSim,
                                                          snmp_client: SnmpClient) -> None:
    sim = await start_sim(profile="canon", community="s3cret-read")
    result = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="mac", expected_mac=MAC,
                        snmp=v2c(sim.address.port, community="public"), timeout=0.8),
        arp_table=NO_ARP, snmp_client=snmp_client)
    assert result.result == "unknown"
    assert ("no SNMP answer (wrong community, SNMP disabled, or a filtered port)"
            in result.detail)
    right = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="mac", expected_mac=MAC,
                        snmp=v2c(sim.address.port, community="s3cret-read")),
        arp_table=NO_ARP, snmp_client=snmp_client)
    assert right.result == "verified", right.detail


@pytest.mark.parametrize(("auth", "priv"), [("SHA", "AES"), ("SHA256", "AES256")])
async def test_v3_auth_priv_verifies(auth: str, priv: str, start_sim: StartSim,
                                     snmp_client: SnmpClient) -> None:
    sim = await start_sim(profile="hp", community="", v3_auth_protocol=auth,
                          v3_priv_protocol=priv)
    settings = SnmpSettings(port=sim.address.port, v3_auth_protocol=auth, v3_priv_protocol=priv,
                            **V3_SETTINGS)  # type: ignore[arg-type]
    for method in ("mac", "serial"):
        result = await check_identity(
            IdentityRequest(ip="127.0.0.1", method=method, make="HP", expected_mac=MAC,  # type: ignore[arg-type]
                            expected_serial=SERIAL, snmp=settings),
            arp_table=NO_ARP, snmp_client=snmp_client)
        assert result.result == "verified", result.detail
        assert f"authPriv {auth}/{priv}" in result.detail


@pytest.mark.parametrize("wrong", [{"v3_auth_key": "wrongauth99"},
                                   {"v3_priv_key": "wrongpriv99"},
                                   {"v3_user": "intruder"}])
async def test_wrong_v3_credentials_are_unknown(wrong: dict[str, str], start_sim: StartSim,
                                                snmp_client: SnmpClient) -> None:
    sim = await start_sim(profile="hp", community="")
    settings = SnmpSettings(port=sim.address.port,
                            **{**V3_SETTINGS, **wrong})  # type: ignore[arg-type]
    result = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="mac", expected_mac=MAC, snmp=settings),
        arp_table=StaticNeighbourTable({"127.0.0.1": MAC}), snmp_client=snmp_client)
    assert result.result == "unknown", result.detail
    assert result.code == "snmp_v3_auth_failed"
    # the device is there but refuses us: no neighbour-table fallback may hide that
    assert "refused our SNMP v3" in result.detail and result.method_used is None


async def test_v3_keys_for_one_user_can_change_between_checks(
        start_sim: StartSim, snmp_client: SnmpClient) -> None:
    """One engine per process: a user seen with new keys must be reconfigured, not reused."""
    sim = await start_sim(profile="hp", community="")
    good = SnmpSettings(port=sim.address.port, **V3_SETTINGS)  # type: ignore[arg-type]
    bad = SnmpSettings(port=sim.address.port,
                       **{**V3_SETTINGS, "v3_auth_key": "wrongauth99"})  # type: ignore[arg-type]
    outcomes = []
    for settings in (good, bad, good):
        result = await check_identity(
            IdentityRequest(ip="127.0.0.1", method="mac", expected_mac=MAC, snmp=settings),
            arp_table=NO_ARP, snmp_client=snmp_client)
        outcomes.append(result.result)
    assert outcomes == ["verified", "unknown", "verified"]


async def test_snmp_off_primes_and_reads_the_neighbour_table(snmp_client: SnmpClient) -> None:
    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await check_identity(
            IdentityRequest(ip="127.0.0.1", method="mac", expected_mac=MAC,
                            snmp=SnmpSettings(version="off"), ews_port=port),
            arp_table=StaticNeighbourTable({"127.0.0.1": MAC}), snmp_client=snmp_client)
    finally:
        server.close()
        await server.wait_closed()
    assert result.result == "verified" and result.method_used == "arp"
    assert "SNMP is off" in result.detail
    assert connections == [1]


async def test_concurrent_checks_share_one_engine(start_sim: StartSim,
                                                  snmp_client: SnmpClient) -> None:
    sims = [await start_sim(profile=name, mac=f"02:00:00:00:00:0{i}", serial=f"SN{i}")
            for i, name in enumerate(["hp", "ricoh", "canon", "brother"])]
    requests = [IdentityRequest(ip="127.0.0.1", method="mac", expected_mac=f"02:00:00:00:00:0{i}",
                                snmp=v2c(sim.address.port)) for i, sim in enumerate(sims)]
    results = await asyncio.gather(*(check_identity(r, arp_table=NO_ARP, snmp_client=snmp_client)
                                     for r in requests))
    assert [r.result for r in results] == ["verified"] * 4


async def test_default_client_and_table_work_without_injection(start_sim: StartSim) -> None:
    sim = await start_sim(profile="konica")
    result = await check_identity(IdentityRequest(
        ip="127.0.0.1", method="serial", expected_serial=SERIAL, snmp=v2c(sim.address.port)))
    assert result.result == "verified", result.detail


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"ip": "printer.local", "method": "mac", "expected_mac": MAC}, "identity.bad_ip"),
    ({"ip": "0.0.0.0", "method": "mac", "expected_mac": MAC}, "identity.bad_ip"),
    ({"ip": "10.0.0.5", "method": "mac"}, "identity.no_expected_mac"),
    ({"ip": "10.0.0.5", "method": "mac", "expected_mac": "a0:d3"}, "identity.bad_expected_mac"),
    ({"ip": "10.0.0.5", "method": "serial", "expected_serial": "  "},
     "identity.no_expected_serial"),
    ({"ip": "10.0.0.5", "method": "ip", "expected_mac": MAC}, "identity.bad_method"),
    ({"ip": "10.0.0.5", "method": "mac", "expected_mac": MAC, "timeout": 0},
     "identity.bad_timeout"),
])
def test_bad_requests_are_refused_with_a_code(kwargs: dict[str, object], code: str) -> None:
    with pytest.raises(IdentityRequestError) as caught:
        IdentityRequest(**kwargs)  # type: ignore[arg-type]
    assert caught.value.code == code


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"version": "1"}, "snmp.bad_version"),
    ({"community": ""}, "snmp.no_community"),
    ({"version": "3"}, "snmp.no_v3_user"),
    ({"version": "3", "v3_user": "u", "v3_auth_key": "short"}, "snmp.short_v3_key"),
    ({"version": "3", "v3_user": "u", "v3_priv_key": "privkey123"}, "snmp.priv_without_auth"),
    ({"version": "3", "v3_user": "u", "v3_auth_protocol": "SHA3"}, "snmp.bad_v3_auth"),
    ({"port": 0}, "snmp.bad_port"),
])
def test_bad_snmp_settings_are_refused_with_a_code(kwargs: dict[str, object], code: str) -> None:
    with pytest.raises(SnmpSettingsError) as caught:
        SnmpSettings(**kwargs)  # type: ignore[arg-type]
    assert caught.value.code == code


def test_settings_repr_hides_keys_and_request_normalises_values() -> None:
    settings = SnmpSettings(version="3", v3_user="tech", v3_auth_key="authkey123",
                            v3_priv_key="privkey123")
    assert "authkey123" not in repr(settings) and "privkey123" not in repr(settings)
    request = IdentityRequest(ip="::ffff:10.0.0.5", method="mac", expected_mac="A0D3C14A2B3C")
    assert request.expected_mac == MAC


def _has_ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this host")
async def test_ipv6_device_verifies_through_ip_address_table(
        start_sim: StartSim, snmp_client: SnmpClient) -> None:
    from ewsgate.config import HostPort

    sim = await start_sim(profile="ricoh", listen=HostPort("::1", 0))
    result = await check_identity(
        IdentityRequest(ip="::1", method="mac", expected_mac=MAC, snmp=v2c(sim.address.port)),
        arp_table=NO_ARP, snmp_client=snmp_client)
    assert result.result == "verified", result.detail
    assert "ifPhysAddress.3" in result.detail  # Ricoh's port, mapped by ipAddressIfIndex


async def test_system_table_reads_netlink_neighbours_for_v6_and_missing_sources(
        tmp_path: Path) -> None:
    """The table comes from rtnetlink records, not a forked ``ip neigh``: a REACHABLE IPv6
    entry is found, a FAILED one is no entry, and unreadable sources are no entry either."""
    records = [NeighbourRecord(index=2, state=NUD_REACHABLE,
                               destination=ipaddress.ip_address("2001:db8::20"),
                               lladdr=bytes.fromhex("A0D3C14A2B3C")),
               NeighbourRecord(index=2, state=NUD_FAILED,
                               destination=ipaddress.ip_address("2001:db8::21"), lladdr=None)]
    asked: list[int] = []

    def netlink(family: int) -> list[NeighbourRecord]:
        asked.append(family)
        return records if family == socket.AF_INET6 else []

    table = SystemNeighbourTable(proc_path=None, netlink=netlink)
    assert await table.lookup("2001:db8::20") == MAC
    assert await table.lookup("2001:db8::21") is None
    assert asked == [socket.AF_INET6, socket.AF_INET6]

    def unavailable(family: int) -> list[NeighbourRecord]:
        raise NetlinkError("netlink: not available on this platform")

    missing = SystemNeighbourTable(proc_path=tmp_path / "absent", netlink=unavailable)
    assert await missing.lookup("10.0.0.5") is None


async def test_device_reporting_no_mac_falls_back_to_the_neighbour_table(
        start_sim: StartSim, snmp_client: SnmpClient) -> None:
    sim = await start_sim(profile="kyocera", mac="00:00:00:00:00:00")
    request = IdentityRequest(ip="127.0.0.1", method="mac", expected_mac=MAC,
                              snmp=v2c(sim.address.port))
    result = await check_identity(request, arp_table=StaticNeighbourTable({"127.0.0.1": MAC}),
                                  snmp_client=snmp_client)
    assert result.result == "verified" and result.method_used == "arp"
    assert "reports no interface MAC" in result.detail
    assert result.seen_serial == SERIAL
    nothing = await check_identity(request, arp_table=NO_ARP, snmp_client=snmp_client)
    assert nothing.result == "unknown" and nothing.code == "no_mac"
