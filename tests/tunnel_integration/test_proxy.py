"""The agent reaches the relay through an HTTP CONNECT proxy with Basic credentials."""

from __future__ import annotations

import asyncio
import base64
import contextlib

import pytest

from ewsgate.aio.errors import TunnelError

from .conftest import World, http_get

pytestmark = pytest.mark.integration


class ConnectProxy:
    """A minimal CONNECT-only proxy requiring ``user:secret``; records what it was asked."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        self.requests.append(head)
        target = head.split(" ")[1]
        expected = "Basic " + base64.b64encode(b"user:secret").decode()
        if f"Proxy-Authorization: {expected}" not in head:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
            writer.close()
            return
        host, _, port = target.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError, RuntimeError):
                dst.write_eof()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        writer.close()
        up_writer.close()


async def test_tunnel_through_a_connect_proxy_with_basic_auth(world: World) -> None:
    proxy = ConnectProxy()
    await proxy.start()
    try:
        client = world.client(proxy=f"http://user:secret@127.0.0.1:{proxy.port}")
        spec = world.spec()
        await client.open_session(spec)
        stream = await world.registry.open_tunnel_stream(spec.session_id, 0)
        _, body = await http_get(stream, "/blob/1000/5")
        assert len(body) == 1000
        assert proxy.requests[0].startswith(f"CONNECT 127.0.0.1:{world.relay_port} HTTP/1.1")
    finally:
        assert proxy.server is not None
        proxy.server.close()


async def test_wrong_proxy_credentials_fail_clearly(world: World) -> None:
    proxy = ConnectProxy()
    await proxy.start()
    try:
        client = world.client(proxy=f"http://user:wrong@127.0.0.1:{proxy.port}")
        with pytest.raises(TunnelError, match=r"407.*check the proxy credentials"):
            await client.open_session(world.spec())
    finally:
        assert proxy.server is not None
        proxy.server.close()
