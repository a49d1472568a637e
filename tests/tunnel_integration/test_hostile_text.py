"""A hostile installation's GOAWAY reason reaches the relay's log escaped and capped: a
hand-driven agent over real TLS sends ANSI escapes, a forged log line and oversized text."""

from __future__ import annotations

import asyncio
import logging
import ssl

import pytest

from ewsgate.tunnel import Connection, Role
from ewsgate.tunnel.credential import encode_credential
from ewsgate.tunnel.frames import MAX_REASON, FrameType, encode_frame, encode_goaway

from .conftest import World

pytestmark = pytest.mark.integration

HOSTILE = "\x1b[2J\x1b]0;owned\x07\u202etxt.exe\nERROR forged log line\r"


async def _hostile_agent(world: World, frame: bytes) -> None:
    """Admitted with a valid certificate and ticket, then sends ``frame`` and waits for EOF."""
    context = ssl.create_default_context(cafile=str(world.ca_file))
    context.load_cert_chain(world.agent_cert, world.agent_key)
    reader, writer = await asyncio.open_connection("127.0.0.1", world.relay_port, ssl=context,
                                                   server_hostname="localhost")
    core = Connection(Role.DIALER, credential=encode_credential(world.ticket("hostile"), 1))
    try:
        writer.write(core.data_to_send())
        await writer.drain()
        core.receive_data(await asyncio.wait_for(reader.read(65536), 10))
        writer.write(frame)
        await writer.drain()
        async with asyncio.timeout(10):
            while await reader.read(65536):
                pass
    finally:
        writer.close()
        await writer.wait_closed()


def _relay_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("ewsgate")]


async def _until_logged(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    async with asyncio.timeout(10):
        while not any(needle in line for line in _relay_lines(caplog)):
            await asyncio.sleep(0.02)
    return _relay_lines(caplog)


async def test_goaway_reason_with_ansi_escapes_is_logged_escaped(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ewsgate")
    reason = (HOSTILE * 40)[:MAX_REASON]
    await _hostile_agent(world, encode_goaway(0, 0, reason))
    lines = await _until_logged(caplog, "sent GOAWAY")
    [line] = [line for line in lines if "sent GOAWAY" in line]
    assert "\x1b" not in line and "\n" not in line and "\r" not in line
    assert "\u202e" not in line and "\x07" not in line
    assert "\\x1b[2J" in line and "\\x0aERROR forged log line" in line
    assert len(line) < MAX_REASON + 100
    for other in lines:
        assert "\x1b" not in other


async def test_a_10_kb_goaway_reason_is_refused_and_nothing_of_it_is_logged(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ewsgate")
    body = ("\x1b[31m" + "A" * 100) * 100  # about 10 kB
    payload = (0).to_bytes(4, "big") * 2 + body.encode()
    await _hostile_agent(world, encode_frame(FrameType.GOAWAY, 0, 0, payload))
    await asyncio.sleep(0.2)
    lines = _relay_lines(caplog)
    assert all("\x1b" not in line for line in lines)
    assert all(len(line) < 2000 for line in lines)
    assert not any("A" * 600 in line for line in lines)
