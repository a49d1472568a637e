"""The simulated printer's SNMP agent: its MIB table, its settings, and what net-snmp's own
command-line tools (a client we did not write) read from it over UDP."""

from __future__ import annotations

import asyncio
import shutil
import socket

import pytest

from ewsgate.config import HostPort
from ewsgate.devicesim.mib import (
    VENDORS,
    Gauge,
    IpAddress,
    MibTable,
    build_printer_mib,
    encode_serial,
    oid,
    parse_mac,
    vendor_for_profile,
)
from ewsgate.devicesim.snmp_agent import SnmpAgentConfig, SnmpAgentError, serve_snmp

from .conftest import MAC, SERIAL, StartSim

RAW_MAC = parse_mac(MAC)


def test_table_get_and_next_follow_oid_order_not_text_order() -> None:
    table = MibTable({(1, 3, 6, 1, 10): 2, (1, 3, 6, 1, 9): 1, (1, 3, 6, 1, 10, 1): 3})
    assert table.oids() == [(1, 3, 6, 1, 9), (1, 3, 6, 1, 10), (1, 3, 6, 1, 10, 1)]
    assert table.next((1, 3, 6, 1, 9)) == ((1, 3, 6, 1, 10), 2)
    assert table.next((1, 3)) == ((1, 3, 6, 1, 9), 1)
    assert table.next((1, 3, 6, 1, 10, 1)) is None
    assert table.get((1, 3, 6, 1, 11)) is None


def test_printer_mib_maps_the_device_ip_to_the_chosen_if_index() -> None:
    table = build_printer_mib(VENDORS["canon"], mac=RAW_MAC, serial=SERIAL,
                              device_ip="192.168.1.20")
    eth = VENDORS["canon"].if_index
    assert eth != 1
    assert table.get(oid(f"1.3.6.1.2.1.2.2.1.6.{eth}")) == RAW_MAC
    assert table.get(oid("1.3.6.1.2.1.2.2.1.6.1")) == b""  # the loopback has no MAC
    assert table.get(oid("1.3.6.1.2.1.4.20.1.2.192.168.1.20")) == eth
    assert table.get(oid("1.3.6.1.2.1.4.20.1.2.127.0.0.1")) == 1
    assert table.get(oid("1.3.6.1.2.1.4.20.1.1.192.168.1.20")) == IpAddress(
        bytes([192, 168, 1, 20]))
    assert table.get(oid(f"1.3.6.1.2.1.2.2.1.5.{eth}")) == Gauge(1_000_000_000)
    assert table.get(oid("1.3.6.1.2.1.43.5.1.1.17.1")) == SERIAL.encode()
    for serial_oid in VENDORS["canon"].serial_oids:
        assert table.get(oid(serial_oid)) == SERIAL.encode()
    assert table.get(oid("1.3.6.1.2.1.1.2.0")) == oid(VENDORS["canon"].sys_object_id)


def test_ipv6_device_is_mapped_in_ip_address_table() -> None:
    table = build_printer_mib(VENDORS["hp"], mac=RAW_MAC, serial=SERIAL, device_ip="2001:db8::20")
    packed = ".".join(str(b) for b in bytes.fromhex("20010db8000000000000000000000020"))
    assert table.get(oid(f"1.3.6.1.2.1.4.34.1.3.2.16.{packed}")) == VENDORS["hp"].if_index


def test_if_index_one_is_refused_because_it_is_the_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        build_printer_mib(VENDORS["hp"], mac=RAW_MAC, serial=SERIAL, device_ip="10.0.0.5",
                          if_index=1)


def test_hp_serial_encodings() -> None:
    assert encode_serial("AB1", "plain") == b"AB1"
    assert encode_serial("AB1", "nul-padded").rstrip(b"\x00") == b"AB1"
    assert encode_serial("AB1", "hex-text") == b"0x414231"


@pytest.mark.parametrize(("name", "vendor"), [("hp", "hp"), ("HP-FutureSmart", "hp"),
                                              ("Konica Minolta", "konica"),
                                              ("kyocera_taskalfa", "kyocera")])
def test_profile_names_resolve_to_vendors(name: str, vendor: str) -> None:
    assert vendor_for_profile(name).name == vendor


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"profile": "epson"}, "devicesim.unknown_vendor"),
    ({"mac": "a0:d3"}, "devicesim.bad_mac"),
    ({"serial": ""}, "devicesim.bad_serial"),
    ({"community": "", "v3_user": None}, "devicesim.no_access"),
    ({"v3_user": "u", "v3_auth_key": "short"}, "devicesim.short_v3_key"),
    ({"v3_user": "u", "v3_priv_key": "privkey123"}, "devicesim.priv_without_auth"),
    ({"v3_user": "u", "v3_auth_protocol": "SHA3"}, "devicesim.bad_v3_auth"),
    ({"listen": HostPort("printer", 0)}, "devicesim.bad_device_ip"),
])
def test_bad_simulator_settings_are_refused_with_a_code(kwargs: dict[str, object],
                                                        code: str) -> None:
    settings: dict[str, object] = {"listen": HostPort("127.0.0.1", 0), **kwargs}
    with pytest.raises(SnmpAgentError) as caught:
        SnmpAgentConfig(**settings)  # type: ignore[arg-type]
    assert caught.value.code == code


def test_config_from_devicesim_flags() -> None:
    config = SnmpAgentConfig.from_options({
        "snmp": HostPort("127.0.0.1", 0), "profile": "lexmark", "mac": MAC, "serial": "LX1",
        "snmp_community": "ro", "snmp_v3_user": "tech", "snmp_v3_auth_key": "authkey123",
        "snmp_if_index": 9, "http": None})
    assert (config.profile, config.community, config.v3_user, config.if_index) == (
        "lexmark", "ro", "tech", 9)


async def _run(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={"MIBS": "", "PATH": "/usr/bin:/bin"})
    out, _ = await asyncio.wait_for(process.communicate(), timeout=20)
    return out.decode()


needs_net_snmp_tools = pytest.mark.skipif(
    shutil.which("snmpget") is None, reason="net-snmp tools (snmpget) are not installed; "
    "run scripts/install-system-deps.sh")


@pytest.mark.integration
@needs_net_snmp_tools
async def test_net_snmp_tools_read_the_simulator_over_v2c_and_v3(start_sim: StartSim) -> None:
    sim = await start_sim(profile="brother", community="ro-community", if_index=3)
    target = f"127.0.0.1:{sim.address.port}"
    walked = await _run("snmpwalk", "-On", "-v2c", "-c", "ro-community", target,
                        "1.3.6.1.2.1.2.2.1.6")
    assert ".1.3.6.1.2.1.2.2.1.6.3 = Hex-STRING: A0 D3 C1 4A 2B 3C" in walked
    v3 = await _run("snmpget", "-On", "-v3", "-l", "authPriv", "-u", "tech", "-a", "SHA",
                    "-A", "authkey123", "-x", "AES", "-X", "privkey123", target,
                    "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.1.0", "1.3.6.1.2.1.4.20.1.2.127.0.0.1")
    assert f'= STRING: "{SERIAL}"' in v3 and "= INTEGER: 3" in v3
    bulk = await _run("snmpbulkwalk", "-On", "-v2c", "-c", "ro-community", target, "1.3.6.1.2.1")
    assert "prtGeneral" not in bulk and ".1.3.6.1.2.1.43.5.1.1.17.1" in bulk
    wrong = await _run("snmpget", "-v2c", "-c", "public", "-t", "0.3", "-r", "0", target,
                       "1.3.6.1.2.1.1.1.0")
    assert "Timeout" in wrong


@pytest.mark.integration
async def test_close_frees_the_port_and_port_zero_reports_the_real_port() -> None:
    handle = await serve_snmp(SnmpAgentConfig(listen=HostPort("127.0.0.1", 0)))
    port = handle.address.port
    assert port != 0
    handle.close()
    handle.close()  # idempotent
    await handle.wait_closed()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))


@pytest.mark.integration
async def test_busy_port_is_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(SnmpAgentError) as caught:
            await serve_snmp(SnmpAgentConfig(listen=HostPort("127.0.0.1", port)))
    assert caught.value.code == "devicesim.snmp_bind"
    assert "pick another --snmp port" in str(caught.value)
