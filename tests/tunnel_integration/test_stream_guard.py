"""The agent over real TLS: no dial for a reset stream, a cap on device connections."""

from __future__ import annotations

import asyncio
import socket

import pytest

from ewsgate.agent.dialer import DeviceEndpoint, DeviceTarget
from ewsgate.agent.tunnel_reports import TunnelReport
from ewsgate.aio.errors import StreamRefusedError
from ewsgate.tunnel import ErrorCode

from .conftest import World, http_get

pytestmark = pytest.mark.integration


async def test_streams_over_the_cap_are_refused_with_a_clear_reason(world: World) -> None:
    reports: list[TunnelReport] = []
    client = world.client(max_device_connections=4)
    client.reporter = reports.append
    spec = world.spec()
    await client.open_session(spec)
    tunnel = world.registry.tunnel(spec.session_id)
    assert tunnel is not None
    held = [await tunnel.connection.open_stream(0) for _ in range(4)]
    with pytest.raises(StreamRefusedError) as refused:
        await tunnel.connection.open_stream(0)
    assert refused.value.code is ErrorCode.REFUSED_STREAM
    assert "4 device connections" in refused.value.message
    assert [r.kind for r in reports] == ["stream_refused"]
    held[0].close()
    await held[0].wait_closed()
    for _ in range(500):  # the slot comes back once the agent's side of the splice is done
        try:
            stream = await tunnel.connection.open_stream(0)
            break
        except StreamRefusedError:
            await asyncio.sleep(0.02)
    head, _ = await http_get(stream, "/blob/10/1")
    assert head.startswith(b"HTTP/1.1 200")


async def test_a_reset_during_the_connect_abandons_it(world: World) -> None:
    """A device that never completes the handshake: the relay's RESET ends the dial at once."""
    # a listening socket with a backlog of 0 that nobody accepts: connects hang in SYN-SENT
    # on Linux once the backlog is full (the first one fills it)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(0)
    filler = socket.create_connection(blocker.getsockname())
    port = blocker.getsockname()[1]
    device = DeviceTarget(ip="127.0.0.1", endpoints=(DeviceEndpoint("http", port),))
    client = world.client()
    spec = world.spec(device=device)
    session = await client.open_session(spec)
    tunnel = world.registry.tunnel(spec.session_id)
    assert tunnel is not None
    opening = asyncio.ensure_future(tunnel.connection.open_stream(0, within=0.3))
    with pytest.raises(TimeoutError):
        await opening  # the relay gives up and resets the stream (CANCEL)
    for _ in range(500):
        if session.slots.in_use == 0:
            break
        await asyncio.sleep(0.01)
    assert session.slots.in_use == 0, "the dial is still holding a device slot"
    filler.close()
    blocker.close()
