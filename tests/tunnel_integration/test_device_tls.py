"""HTTPS devices: the agent terminates their TLS, pins the certificate, fails on a change."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl

import pytest

from ewsgate import pki
from ewsgate.agent.dialer import DeviceEndpoint
from ewsgate.tunnel import ErrorCode

from .conftest import World, http_get

pytestmark = pytest.mark.integration


async def _https_device(world: World, name: str, port: int = 0) -> asyncio.Server:
    now = dt.datetime.now(dt.UTC)
    own = pki.create_ca(f"printer {name}", now=now)  # self-signed, as printers ship
    issued = own.issue_server_cert(ip_addresses=["127.0.0.1"], now=now)
    cert, key = world.tmp / f"{name}.crt", world.tmp / f"{name}.key"
    cert.write_bytes(pki.cert_to_pem(issued.cert))
    key.write_bytes(pki.key_to_pem(issued.key))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            body = name.encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port, ssl=ctx, reuse_address=True)


async def test_https_device_is_reached_in_plain_http_through_the_tunnel(world: World) -> None:
    device = await _https_device(world, "printer-a")
    port = device.sockets[0].getsockname()[1]
    try:
        client = world.client()
        spec = world.spec(device=world.device(DeviceEndpoint("https", port)))
        session = await client.open_session(spec)
        for _ in range(2):
            stream = await world.registry.open_tunnel_stream(spec.session_id, 1)
            _, body = await http_get(stream, "/")
            assert body == b"printer-a"
        assert session.dialer.pin.fingerprint is not None
        assert len(session.dialer.pin.fingerprint) == 64
    finally:
        device.close()


async def test_a_changed_device_certificate_fails_the_session(world: World) -> None:
    device = await _https_device(world, "printer-a")
    port = device.sockets[0].getsockname()[1]
    client = world.client()
    spec = world.spec(device=world.device(DeviceEndpoint("https", port)))
    session = await client.open_session(spec)
    stream = await world.registry.open_tunnel_stream(spec.session_id, 1)
    await http_get(stream, "/")
    first = session.dialer.pin.fingerprint
    device.close()
    await device.wait_closed()
    impostor = await _https_device(world, "impostor", port)
    try:
        from ewsgate.relay.upstream import UpstreamUnavailable

        with pytest.raises(UpstreamUnavailable, match="now presents certificate"):
            await world.registry.open_stream(spec.session_id, 1)
        await asyncio.wait_for(asyncio.shield(session.ended), 2)
        assert session.state.value == "failed"
        assert first is not None and first in session.reason
        async with asyncio.timeout(2):
            while world.registry.lookup(spec.session_id) is not None:
                await asyncio.sleep(0.02)
    finally:
        impostor.close()
    assert ErrorCode.DEVICE_CERT_CHANGED == 17


def test_the_device_context_accepts_legacy_tls() -> None:
    from ewsgate.aio.tls import device_context

    ctx = device_context()
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
    assert ctx.minimum_version <= ssl.TLSVersion.TLSv1
