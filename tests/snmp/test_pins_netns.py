"""The on-link MAC pin against the real kernel neighbour table, in network namespaces the test
creates: the agent's check runs as a process in namespace A, the simulated printer
(``ewsgate devicesim``) as a process in namespace B, joined by a veth pair on 10.77.0.0/24.
The first check learns B's MAC from A's neighbour table; then another host takes over
(same SNMPv2c serial, another MAC): refused once pinned, and verified against its own MAC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.integration
SERIAL = "CNBRM5K0QZ"
DEVICE_IP = "10.77.0.2"
GENUINE_MAC = "02:77:00:00:00:02"
ROGUE_MAC = "02:66:00:00:00:66"

CHECK = """
import asyncio, json, sys
from ewsgate.agent.device_check import DeviceCheck, run_check
payload = json.loads(sys.argv[1])
outcome = asyncio.run(run_check(DeviceCheck.from_payload(payload)))
print(json.dumps(outcome.as_payload()))
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    a, b = f"ewsg-pa-{os.getpid()}", f"ewsg-pb-{os.getpid()}"
    try:
        _ip("netns", "add", a)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.skip(f"cannot create a network namespace here ({exc}); needs root")
    try:
        _ip("netns", "add", b)
        _ip("link", "add", "va", "netns", a, "type", "veth", "peer", "name", "vb", "netns", b)
        _ip("-n", b, "link", "set", "vb", "address", GENUINE_MAC)
        _ip("-n", a, "addr", "add", "10.77.0.1/24", "dev", "va")
        _ip("-n", b, "addr", "add", f"{DEVICE_IP}/24", "dev", "vb")
        for ns, dev in ((a, "va"), (b, "vb"), (a, "lo"), (b, "lo")):
            _ip("-n", ns, "link", "set", dev, "up")
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def _check(ns: str, pins: dict[str, str | None]) -> dict[str, object]:
    payload = {"ip": DEVICE_IP, "method": "serial", "make": "HP", "expected_serial": SERIAL,
               "timeout": 3.0, "snmp": {"version": "2c", "port": 161, "retries": 1},
               "pins": pins}
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", CHECK,
                           json.dumps(payload)], capture_output=True, text=True, timeout=60,
                          env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_on_link_mac_is_learned_and_a_rogue_with_the_right_serial_is_refused(
        namespaces: tuple[str, str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b = namespaces
    log = (tmp_path / "devicesim.log").open("w")
    device = subprocess.Popen(
        ["ip", "netns", "exec", b, sys.executable, "-m", "ewsgate", "devicesim", "--profile",
         "hp", "--http", f"{DEVICE_IP}:80", "--snmp", f"{DEVICE_IP}:161", "--serial", SERIAL,
         "--mac", GENUINE_MAC],
        stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 30
        while True:
            assert device.poll() is None, (tmp_path / "devicesim.log").read_text()
            first = _check(a, {})
            if first["result"] == "verified" or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert first["result"] == "verified", first
        learned = first["pins"]["learned"]  # type: ignore[index]
        assert learned["mac"] == GENUINE_MAC  # from A's kernel neighbour table
        assert learned["ews_cert_sha256"] is None

        assert _check(a, {"mac": GENUINE_MAC})["result"] == "verified"

        # another host at the address: same serial over SNMPv2c, its own MAC
        _ip("-n", b, "link", "set", "vb", "address", ROGUE_MAC)
        _ip("-n", a, "neigh", "flush", "dev", "va")
        refused = _check(a, {"mac": GENUINE_MAC})
        assert refused["result"] == "mismatch", refused
        assert refused["code"] == "mac_pin_mismatch"
        assert f"expected on-link MAC {GENUINE_MAC}" in str(refused["detail"])
        assert ROGUE_MAC in str(refused["detail"])
        assert _check(a, {"mac": ROGUE_MAC})["result"] == "verified"  # the control
    finally:
        device.terminate()
        try:
            device.wait(10)
        except subprocess.TimeoutExpired:
            device.kill()
            device.wait(5)
        log.close()
