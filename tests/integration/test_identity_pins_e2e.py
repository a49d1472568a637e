"""Device identity pins end to end, on a stack of real processes (portal, relay, agent, a
simulated HTTPS printer): the first session pins the printer's web server certificate; then
another host takes over the address with the right SNMP identity (the same MAC and serial)
but its own certificate — here the printer process restarted, which makes a new self-signed
certificate — and the tunnel reconnects (the relay restarts). The agent re-verifies on the
reconnect, refuses, ends the session and reports it: the session and its job fail with the
reason."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from ewsgate.demo import DemoInfo, DemoStack

from .conftest import _free_block, open_session

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
PROFILE = "hp"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    demo = DemoStack(tmp_path_factory.mktemp("pins") / "data", _free_block(),
                     profiles=(PROFILE,),
                     passwords={"administrator": "admin-pass-1", "configurer": "config-pass-1",
                                "user": "tech-pass-1"})
    with demo:
        yield demo


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _until(check, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s")


def test_a_new_certificate_at_the_address_ends_the_session_on_the_tunnel_reconnect(
        stack: DemoStack) -> None:
    info: DemoInfo = stack.info  # type: ignore[assignment]
    device = info.device(PROFILE)
    opened = open_session(info, PROFILE)
    api, session_url = opened.client, f"{info.api_url}/remote-sessions/{opened.id}"
    pinned = api.get(f"{info.api_url}/devices/{device.id}").json()["identity_pins"]
    assert pinned["ews_cert_sha256"] and len(pinned["ews_cert_sha256"]) == 64  # first session

    stack.restart(f"device-{PROFILE}")  # same MAC and serial over SNMP, a new certificate
    _until(lambda: _listening(device.https_port) and _listening(device.http_port))
    stack.restart("relay")  # the tunnel drops; the agent reconnects and re-verifies

    failed = _until(lambda: (s := api.get(session_url).json())["status"] == "failed" and s)
    reason = failed["reason"]
    assert reason.startswith("cert_pin_mismatch: the device was re-verified (tunnel reconnect)")
    assert pinned["ews_cert_sha256"] in reason
    job = _until(lambda: (j := api.get(f"{info.api_url}/jobs/{opened.session['job_id']}")
                          .json())["status"] == "failed" and j)
    assert job["error"] == reason
    still = api.get(f"{info.api_url}/devices/{device.id}").json()["identity_pins"]
    assert still["ews_cert_sha256"] == pinned["ews_cert_sha256"]  # an agent never overwrites
