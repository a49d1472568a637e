"""Device pins: the pure rules, and the whole check (real SNMP over UDP, real TLS)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ewsgate import pki
from ewsgate.agent.device_check import DeviceCheck, run_check
from ewsgate.agent.identity import IdentityRequest, SnmpSettings
from ewsgate.agent.pins import (
    DevicePins,
    Observation,
    PinError,
    judge_pins,
    normalize_fingerprint,
)
from ewsgate.agent.snmp.client import SnmpClient
from ewsgate.agent.snmp.neighbours import StaticNeighbourTable

from .conftest import MAC, SERIAL, StartSim

FP_A = "a" * 64
FP_B = "b" * 64
OTHER_MAC = "02:00:00:00:00:99"


# -- the rules (pure) ----------------------------------------------------------------------

def test_no_pins_verifies_and_reports_what_was_seen_for_trust_on_first_use() -> None:
    verdict = judge_pins("10.0.0.5", DevicePins(),
                         Observation(ews_cert_sha256=FP_A, tls_port=443, on_link_mac=MAC))
    assert verdict.verified and verdict.code == "pins_verified"
    assert verdict.learned == DevicePins(ews_cert_sha256=FP_A, mac=MAC)
    assert "first time" in verdict.detail


def test_matching_pins_verify() -> None:
    verdict = judge_pins("10.0.0.5", DevicePins(ews_cert_sha256=FP_A, mac=MAC),
                         Observation(ews_cert_sha256=FP_A, tls_port=443, on_link_mac=MAC))
    assert verdict.verified
    assert "pinned certificate and MAC match" in verdict.detail


def test_a_different_certificate_is_a_mismatch_that_says_expected_found_and_what_to_do() -> None:
    verdict = judge_pins("10.0.0.5", DevicePins(ews_cert_sha256=FP_A),
                         Observation(ews_cert_sha256=FP_B, tls_port=443))
    assert verdict.result == "mismatch" and verdict.code == "cert_pin_mismatch"
    assert f"expected web server certificate SHA-256 {FP_A}" in verdict.detail
    assert f"found {FP_B} on port 443" in verdict.detail
    assert "Administrator can reset" in verdict.detail


def test_a_different_on_link_mac_is_a_mismatch() -> None:
    verdict = judge_pins("10.0.0.5", DevicePins(mac=MAC),
                         Observation(on_link_mac=OTHER_MAC))
    assert verdict.result == "mismatch" and verdict.code == "mac_pin_mismatch"
    assert f"expected on-link MAC {MAC}" in verdict.detail and OTHER_MAC in verdict.detail


def test_a_pin_that_cannot_be_checked_fails_closed() -> None:
    cert = judge_pins("10.0.0.5", DevicePins(ews_cert_sha256=FP_A),
                      Observation(tls_port=443, cert_error="cannot connect to port 443"))
    assert cert.result == "unknown" and cert.code == "cert_pin_unchecked"
    assert "cannot connect to port 443" in cert.detail
    mac = judge_pins("10.0.0.5", DevicePins(mac=MAC), Observation())
    assert mac.result == "unknown" and mac.code == "mac_pin_unchecked"


def test_the_certificate_pin_is_checked_before_the_mac_pin() -> None:
    verdict = judge_pins("10.0.0.5", DevicePins(ews_cert_sha256=FP_A, mac=MAC),
                         Observation(ews_cert_sha256=FP_B, on_link_mac=OTHER_MAC))
    assert verdict.code == "cert_pin_mismatch"


def test_pins_normalise_and_refuse_garbage() -> None:
    spelled = ":".join(["AB"] * 32)
    assert normalize_fingerprint(spelled) == "ab" * 32
    pins = DevicePins.from_payload({"ews_cert_sha256": spelled, "mac": "A0-D3-C1-4A-2B-3C"})
    assert pins == DevicePins(ews_cert_sha256="ab" * 32, mac=MAC)
    assert DevicePins.from_payload(None).empty
    assert DevicePins(mac=MAC).merged(DevicePins(ews_cert_sha256=FP_A, mac=OTHER_MAC)) == \
        DevicePins(ews_cert_sha256=FP_A, mac=MAC)
    for bad in ({"ews_cert_sha256": "abc"}, {"mac": "nope"}, ["not", "an", "object"]):
        with pytest.raises(PinError):
            DevicePins.from_payload(bad)


# -- the whole check, real SNMP and real TLS -------------------------------------------------

HttpsDevice = Callable[[str], Awaitable[tuple[int, str]]]


@pytest.fixture
async def https_device(tmp_path: Path) -> AsyncIterator[HttpsDevice]:
    """Start a TLS server on 127.0.0.1 with its own self-signed certificate (as printers
    ship); returns its port and the certificate's SHA-256."""
    servers: list[asyncio.Server] = []

    async def start(name: str) -> tuple[int, str]:
        now = dt.datetime.now(dt.UTC)
        issued = pki.create_ca(f"printer {name}", now=now).issue_server_cert(
            ip_addresses=["127.0.0.1"], now=now)
        cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
        cert.write_bytes(pki.cert_to_pem(issued.cert))
        key.write_bytes(pki.key_to_pem(issued.key))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)

        async def handle(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
        servers.append(server)
        fingerprint = hashlib.sha256(issued.cert.public_bytes(Encoding.DER)).hexdigest()
        return server.sockets[0].getsockname()[1], fingerprint

    yield start
    for server in servers:
        server.close()


def _check(port: int, *, tls_port: int | None, pins: DevicePins) -> DeviceCheck:
    return DeviceCheck(request=IdentityRequest(
        ip="127.0.0.1", method="serial", make="HP", expected_serial=SERIAL,
        snmp=SnmpSettings(version="2c", port=port), timeout=4.0), pins=pins, tls_port=tls_port)


integration = pytest.mark.integration


@integration
async def test_first_check_learns_the_certificate_and_the_on_link_mac(
        start_sim: StartSim, snmp_client: SnmpClient, https_device: HttpsDevice) -> None:
    sim = await start_sim(profile="hp")
    tls_port, fingerprint = await https_device("printer")
    outcome = await run_check(_check(sim.address.port, tls_port=tls_port, pins=DevicePins()),
                              arp_table=StaticNeighbourTable({"127.0.0.1": MAC}),
                              snmp_client=snmp_client)
    assert outcome.verified, outcome.detail
    assert outcome.learned == DevicePins(ews_cert_sha256=fingerprint, mac=MAC)
    payload = outcome.as_payload()
    assert payload["pins"]["learned"] == {"ews_cert_sha256": fingerprint, "mac": MAC}


@integration
async def test_right_serial_but_another_certificate_is_refused_once_pinned(
        start_sim: StartSim, snmp_client: SnmpClient, https_device: HttpsDevice) -> None:
    """The SNMP answer is right (v2c, the recorded serial); the web server is another one."""
    sim = await start_sim(profile="hp")
    _, pinned = await https_device("printer")
    rogue_port, rogue = await https_device("rogue")
    outcome = await run_check(
        _check(sim.address.port, tls_port=rogue_port, pins=DevicePins(ews_cert_sha256=pinned)),
        arp_table=StaticNeighbourTable({}), snmp_client=snmp_client)
    assert outcome.identity.verified  # the first factor alone would have let it through
    assert outcome.result == "mismatch" and outcome.code == "cert_pin_mismatch"
    assert pinned in outcome.detail and rogue in outcome.detail


@integration
async def test_right_serial_but_another_on_link_mac_is_refused_once_pinned(
        start_sim: StartSim, snmp_client: SnmpClient) -> None:
    sim = await start_sim(profile="hp")
    outcome = await run_check(
        _check(sim.address.port, tls_port=None, pins=DevicePins(mac=MAC)),
        arp_table=StaticNeighbourTable({"127.0.0.1": OTHER_MAC}), snmp_client=snmp_client)
    assert outcome.result == "mismatch" and outcome.code == "mac_pin_mismatch"


@integration
async def test_pinned_certificate_unreachable_fails_closed(
        start_sim: StartSim, snmp_client: SnmpClient) -> None:
    sim = await start_sim(profile="hp")
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    outcome = await run_check(
        _check(sim.address.port, tls_port=port, pins=DevicePins(ews_cert_sha256=FP_A)),
        arp_table=StaticNeighbourTable({}), snmp_client=snmp_client)
    assert outcome.result == "unknown" and outcome.code == "cert_pin_unchecked"
    assert f"port {port}" in outcome.detail


@integration
async def test_identity_failure_is_reported_without_looking_at_pins(
        start_sim: StartSim, snmp_client: SnmpClient) -> None:
    sim = await start_sim(profile="hp", serial="OTHER")
    outcome = await run_check(_check(sim.address.port, tls_port=None, pins=DevicePins(mac=MAC)),
                              arp_table=StaticNeighbourTable({}), snmp_client=snmp_client)
    assert outcome.code == "serial_mismatch" and outcome.pins is None
    assert outcome.as_payload()["pins"] is None


def test_payload_parsing_takes_pins_and_tls_port() -> None:
    check = DeviceCheck.from_payload({
        "ip": "10.0.0.5", "method": "serial", "expected_serial": SERIAL, "tls_port": 443,
        "pins": {"ews_cert_sha256": FP_A, "mac": None}, "snmp": {"version": "2c"}})
    assert check.tls_port == 443 and check.pins == DevicePins(ews_cert_sha256=FP_A)
    old = DeviceCheck.from_payload({"ip": "10.0.0.5", "method": "serial",
                                    "expected_serial": SERIAL})
    assert old.pins.empty and old.tls_port is None
    with pytest.raises(ValueError, match="tls_port"):
        DeviceCheck.from_payload({"ip": "10.0.0.5", "method": "serial",
                                  "expected_serial": SERIAL, "tls_port": 0})
