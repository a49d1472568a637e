"""The Connect token bucket over real gRPC and TLS: an agent over the rate is refused before
any database work with a reserved pause, waits that pause (not its own short backoff) and is
admitted when it comes back — one refusal, no retry storm."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ewsgate import pki
from ewsgate.config import HostPort
from ewsgate.portal.control import ControlServer, ControlServerConfig
from ewsgate.portal.control.admission import AdmissionConfig
from ewsgate.portal.store.db import Database

from .conftest import FAST_HUB, eventually, get_installation, utc_now

pytestmark = pytest.mark.db


@pytest.fixture
async def limited(db: Database, ca: pki.CertificateAuthority) -> AsyncIterator[ControlServer]:
    """A second control server on the same database, admitting 1 stream per 1.5 s."""
    server = ControlServer(ControlServerConfig(listen="127.0.0.1:0", enrol_listen=None,
                                               hub=FAST_HUB,
                                               admission=AdmissionConfig(rate=1 / 1.5, burst=1)),
                           database=db, ca=ca, clock=utc_now)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0.2)


async def test_an_agent_over_the_rate_waits_its_reserved_pause_then_is_admitted(
        db: Database, limited: ControlServer, enrol, agents) -> None:
    first, second = await enrol("a"), await enrol("b")
    for enrolled in (first, second):
        enrolled.state.save_control_addresses([HostPort("127.0.0.1", limited.port)])
    running = agents(first.state)

    async def online(installation_id: int) -> bool:
        row = await get_installation(db, installation_id)
        return bool(row and row.online)

    await eventually(lambda: online(first.installation_id), 10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    late = agents(second.state)  # backoff 0.05..0.5 s of its own: the pause must win
    await eventually(lambda: late.client.last_error and "retry_after" in late.client.last_error,
                     5)
    assert "RESOURCE_EXHAUSTED" in late.client.last_error
    await eventually(lambda: online(second.installation_id), 10)
    waited = loop.time() - started
    assert waited >= 1.0, f"admitted after {waited:.2f} s: the pause was not honoured"
    assert limited.admission.refused == 1, "the refused agent retried before its slot"
    assert limited.admission.admitted == 2
    assert running.client.connected.is_set()
