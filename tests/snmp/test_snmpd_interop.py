"""Interop with a peer we did not write: net-snmp's ``snmpd`` serving a printer's identity.

snmpd also serves this host's real interfaces, so the device's ifIndex is chosen deliberately:
ipAdEntIfIndex for 127.0.0.1 is overridden to 4242 (the real loopback is 1) and
ifPhysAddress.4242 carries the printer's MAC. A check that read ``ifPhysAddress.1`` or the
container's eth0 would fail here.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ewsgate.agent.identity import IdentityRequest, SnmpSettings, check_identity
from ewsgate.agent.snmp.client import SnmpClient
from ewsgate.agent.snmp.neighbours import StaticNeighbourTable

pytestmark = pytest.mark.integration

SNMPD = Path("/usr/sbin/snmpd")
MAC = "a0:d3:c1:4a:2b:3c"
SERIAL = "CNBRM5K0QZ"
IF_INDEX = 4242
NO_ARP = StaticNeighbourTable({})


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(port: int) -> str:
    hp_serial_hex = (SERIAL.encode() + b"\x00\x00").hex()
    return "\n".join([
        f"agentAddress udp:127.0.0.1:{port}",
        "rocommunity printer-ro 127.0.0.1",
        'createUser tech SHA "authkey123" AES "privkey123"',
        "rouser tech priv",
        "sysDescr HP ETHERNET MULTI-ENVIRONMENT,ROM none,JETDIRECT,JD153",
        "sysObjectID .1.3.6.1.4.1.11.2.3.9.1",
        f"override .1.3.6.1.2.1.4.20.1.2.127.0.0.1 integer {IF_INDEX}",
        f"override .1.3.6.1.2.1.2.2.1.6.{IF_INDEX} octet_str 0x{MAC.replace(':', '')}",
        f'override .1.3.6.1.2.1.43.5.1.1.17.1 octet_str "{SERIAL}"',
        f"override .1.3.6.1.4.1.11.2.3.9.4.2.1.1.3.3.0 octet_str 0x{hp_serial_hex}",
        "",
    ])


def _wait_until_answering(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"snmpd exited with {process.returncode}: {log.read_text()[-2000:]}")
        # a raw v2c GET of sysDescr.0 with community printer-ro (BER written out by hand)
        community = b"printer-ro"
        oid = bytes([0x06, 0x08, 0x2B, 6, 1, 2, 1, 1, 1, 0])
        varbind = b"\x30" + bytes([len(oid) + 2]) + oid + b"\x05\x00"
        varbinds = b"\x30" + bytes([len(varbind)]) + varbind
        pdu_body = b"\x02\x01\x01\x02\x01\x00\x02\x01\x00" + varbinds
        pdu = b"\xa0" + bytes([len(pdu_body)]) + pdu_body
        body = b"\x02\x01\x01\x04" + bytes([len(community)]) + community + pdu
        message = b"\x30" + bytes([len(body)]) + body
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            sock.sendto(message, ("127.0.0.1", port))
            with contextlib.suppress(OSError):
                sock.recvfrom(2048)
                return
    pytest.fail("snmpd did not answer within 10 s")


@pytest.fixture
def snmpd(tmp_path: Path) -> Iterator[int]:
    if not SNMPD.exists():
        pytest.skip("net-snmp snmpd is not installed at /usr/sbin/snmpd "
                    "(run scripts/install-system-deps.sh)")
    process: subprocess.Popen[bytes] | None = None
    log = tmp_path / "snmpd.log"
    try:
        for _attempt in range(3):  # the free port may be taken between probe and bind
            port = _free_udp_port()
            conf = tmp_path / "snmpd.conf"
            conf.write_text(_config(port))
            process = subprocess.Popen(
                [str(SNMPD), "-f", "-C", "-c", str(conf), "-Lf", str(log),
                 "-p", str(tmp_path / "snmpd.pid")],
                env={"SNMP_PERSISTENT_DIR": str(tmp_path / "persist"), "MIBS": "",
                     "PATH": "/usr/sbin:/usr/bin:/bin"},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.2)
            if process.poll() is None:
                break
        assert process is not None
        _wait_until_answering(port, process, log)
        yield port
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
async def client() -> AsyncIterator[SnmpClient]:
    snmp_client = SnmpClient()
    yield snmp_client
    snmp_client.close()


async def test_agent_verifies_mac_and_serial_against_net_snmp_v2c(snmpd: int,
                                                                  client: SnmpClient) -> None:
    settings = SnmpSettings(port=snmpd, community="printer-ro")
    by_mac = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="mac", expected_mac=MAC, snmp=settings),
        arp_table=NO_ARP, snmp_client=client)
    assert by_mac.result == "verified", by_mac.detail
    assert f"ifPhysAddress.{IF_INDEX}" in by_mac.detail
    by_serial = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="serial", make="HP", expected_serial=SERIAL,
                        snmp=settings),
        arp_table=NO_ARP, snmp_client=client)
    assert by_serial.result == "verified", by_serial.detail
    assert by_serial.seen_mac == MAC


async def test_agent_verifies_against_net_snmp_v3_auth_priv(snmpd: int,
                                                            client: SnmpClient) -> None:
    settings = SnmpSettings(port=snmpd, version="3", v3_user="tech", v3_auth_key="authkey123",
                            v3_priv_key="privkey123")
    result = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="mac", expected_mac=MAC, snmp=settings),
        arp_table=NO_ARP, snmp_client=client)
    assert result.result == "verified", result.detail
    wrong = SnmpSettings(port=snmpd, version="3", v3_user="tech", v3_auth_key="wrongauth99",
                         v3_priv_key="privkey123")
    refused = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="mac", expected_mac=MAC, snmp=wrong, timeout=1.5),
        arp_table=NO_ARP, snmp_client=client)
    assert refused.result == "unknown", refused.detail


async def test_net_snmp_mismatches_and_wrong_community_fail_closed(snmpd: int,
                                                                   client: SnmpClient) -> None:
    settings = SnmpSettings(port=snmpd, community="printer-ro")
    other = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="serial", make="HP",
                        expected_serial="JPBCK12345", snmp=settings),
        arp_table=NO_ARP, snmp_client=client)
    assert other.result == "mismatch" and other.seen_serial == SERIAL
    silent = await check_identity(
        IdentityRequest(ip="127.0.0.1", method="mac", expected_mac=MAC,
                        snmp=SnmpSettings(port=snmpd, community="public"), timeout=0.8),
        arp_table=NO_ARP, snmp_client=client)
    assert silent.result == "unknown"
    assert "no SNMP answer (wrong community" in silent.detail
