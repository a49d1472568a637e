"""Nothing leaves the agent toward a forbidden address: counted on the wire, in a network
namespace this test creates (``unshare -n``; root only), with a raw AF_PACKET socket.

The probe (:mod:`tests.agent.netns_probe`) puts the metadata addresses on the namespace's
loopback and the agent's own addresses on a veth "site LAN", runs the agent's real entry points
(``VerifyDevice`` with SNMP on and off, ``OpenSession``, the device dialer) for each forbidden
target, and counts frames toward each. Before this policy existed, SNMP went to
169.254.169.254 and loopback before the refusal, and the priming TCP-connected to the agent's
own host: those frames are what this test counts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .netns_probe import ALLOWED, FORBIDDEN, OUTSIDE

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="network namespaces are "
                       "Linux"),
    pytest.mark.skipif(os.geteuid() != 0, reason="creating a network namespace needs root "
                       "(unshare -n); run this test as root to count packets on the wire"),
    pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("ip") is None,
                       reason="needs util-linux unshare and iproute2 ip for the namespace "
                       "set-up"),
]

PROBE = Path(__file__).with_name("netns_probe.py")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    done = subprocess.run(["unshare", "-n", "--", sys.executable, str(PROBE)],
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode == 3:
        pytest.skip(f"the namespace could not be set up: {done.stdout.strip()}")
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("target", [*FORBIDDEN, *OUTSIDE])
def test_no_frame_goes_toward_a_forbidden_address(report: dict[str, Any], target: str) -> None:
    assert report["agent_frames"][target] == 0, (target, report["refused"][target])
    # the counter does see that address: the probe's own datagram to it afterwards was counted
    control = report["control_frames"][target]
    assert isinstance(control, int) and control > 0, (target, control)


@pytest.mark.parametrize("target", [*FORBIDDEN, *OUTSIDE])
def test_every_entry_point_refuses_with_the_reason(report: dict[str, Any], target: str) -> None:
    outcome = report["refused"][target]
    for check in ("verify_2c", "verify_off"):
        result, code, detail = outcome[check]
        assert result == "unknown" and code.startswith("address."), (target, outcome[check])
        assert detail.startswith("refused: ") and "the agent never contacts it" in detail
    code, message = outcome["open_session"]
    assert code.startswith("address.") and message.startswith("refused: "), outcome
    assert outcome["tunnel_opened"] == []
    assert outcome["dialer"][0] == "refused" and outcome["authorize"][0] == "refused"


def test_the_metadata_refusal_reaches_the_job_in_words(report: dict[str, Any]) -> None:
    code, message = report["refused"]["169.254.169.254"]["open_session"]
    assert code == "address.metadata"
    assert message == ("refused: 169.254.169.254 is the cloud metadata endpoint; the agent "
                       "never contacts it; check the device's recorded IP")
    assert report["refused"]["10.9.0.1"]["verify_off"][1] == "address.own_host"
    assert report["refused"]["10.20.0.5"]["verify_2c"][1] == "address.outside_site"


@pytest.mark.parametrize("target", ALLOWED)
def test_the_allowed_device_is_reached_and_verified_from_the_neighbour_table(
        report: dict[str, Any], target: str) -> None:
    """The counter counts: the device inside the site subnets gets SNMP and the priming
    connect, and its MAC is read from the kernel's table (/proc/net/arp, rtnetlink for IPv6)."""
    assert report["allowed_frames"][target] > 0
    assert report["neighbours"][target] == "a0:d3:c1:4a:2b:3c"
    outcome = report["allowed"][target]
    assert outcome["verify_2c"][0] == "verified" and outcome["verify_off"][0] == "verified"
    assert outcome["open_session"] == ["opened"] and outcome["tunnel_opened"] == [target]
