"""Fixtures for the identity-check and simulated-SNMP-agent tests: simulators on free UDP
ports of 127.0.0.1, one SNMP client per test, and a UDP port that never answers."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from ewsgate.agent.snmp.client import SnmpClient
from ewsgate.config import HostPort
from ewsgate.devicesim.snmp_agent import SnmpAgentConfig, SnmpAgentHandle, serve_snmp

MAC = "a0:d3:c1:4a:2b:3c"
SERIAL = "CNBRM5K0QZ"
V3 = {"v3_user": "tech", "v3_auth_key": "authkey123", "v3_priv_key": "privkey123"}

StartSim = Callable[..., Awaitable[SnmpAgentHandle]]


@pytest.fixture
async def snmp_client() -> AsyncIterator[SnmpClient]:
    client = SnmpClient()
    yield client
    client.close()


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """Start simulated printers (port 0 → a free port); all are closed at teardown."""
    handles: list[SnmpAgentHandle] = []

    async def start(**overrides: Any) -> SnmpAgentHandle:
        settings: dict[str, Any] = {"listen": HostPort("127.0.0.1", 0), "mac": MAC,
                                    "serial": SERIAL, **V3}
        settings.update(overrides)
        handle = await serve_snmp(SnmpAgentConfig(**settings))
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.close()


@pytest.fixture
def silent_udp_port() -> Iterator[int]:
    """A bound UDP port on 127.0.0.1 that reads nothing and answers nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()
