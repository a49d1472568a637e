"""The agent dials the verified device on its configured ports and refuses everything else."""

from __future__ import annotations

import pytest

from ewsgate.agent.dialer import (
    ALLOW_LOOPBACK_FOR_TESTS,
    DestinationRefused,
    DeviceDialer,
    DeviceEndpoint,
    DeviceTarget,
    DialPolicy,
)
from ewsgate.tunnel import ErrorCode

PRINTER = DeviceTarget(ip="192.0.2.10", endpoints=(DeviceEndpoint("http", 80),
                                                   DeviceEndpoint("https", 443)))


def test_the_verified_ip_on_a_configured_port_is_authorized() -> None:
    dialer = DeviceDialer(PRINTER)
    assert dialer.authorize("192.0.2.10", 443) == DeviceEndpoint("https", 443)
    assert dialer.resolve(0) == DeviceEndpoint("http", 80)


@pytest.mark.parametrize(("host", "port", "why"), [
    ("192.0.2.11", 80, "not the verified device"),
    ("192.0.2.10", 8080, "not a configured endpoint"),
    ("printer.local", 80, "not an IP address"),
    ("127.0.0.1", 80, "loopback"),
    ("169.254.1.1", 80, "link-local"),
    ("::1", 80, "loopback"),
    ("fe80::1", 80, "link-local"),
    ("0.0.0.0", 80, "unspecified"),
    ("::ffff:192.0.2.10", 80, "loopback, link-local"),
])
def test_other_destinations_are_refused_and_logged(host: str, port: int, why: str) -> None:
    policy = DialPolicy()
    dialer = DeviceDialer(PRINTER, policy)
    with pytest.raises(DestinationRefused, match=why) as info:
        dialer.authorize(host, port)
    assert info.value.code is ErrorCode.DESTINATION_REFUSED
    assert policy.refused_log and why.split(",")[0] in policy.refused_log[-1]


def test_an_unconfigured_port_index_is_refused() -> None:
    dialer = DeviceDialer(PRINTER)
    for index in (2, -1, 65535):
        with pytest.raises(DestinationRefused, match="not configured"):
            dialer.resolve(index)


@pytest.mark.parametrize("ip", ["127.0.0.1", "169.254.10.10", "224.0.0.1", "printer"])
def test_a_device_record_pointing_at_a_forbidden_address_is_refused(ip: str) -> None:
    with pytest.raises(DestinationRefused):
        DeviceDialer(DeviceTarget(ip=ip, endpoints=(DeviceEndpoint("http", 80),)))


def test_loopback_needs_the_explicit_test_switch() -> None:
    target = DeviceTarget(ip="127.0.0.1", endpoints=(DeviceEndpoint("http", 8080),))
    with pytest.raises(DestinationRefused):
        DeviceDialer(target)
    dialer = DeviceDialer(target, DialPolicy(allow_loopback=ALLOW_LOOPBACK_FOR_TESTS))
    assert dialer.authorize("127.0.0.1", 8080).port == 8080
    # the switch still allows no link-local, and a lookalike value is rejected outright
    with pytest.raises(DestinationRefused):
        dialer.authorize("169.254.1.1", 8080)
    with pytest.raises(TypeError):
        DialPolicy(allow_loopback=True)  # type: ignore[arg-type]
