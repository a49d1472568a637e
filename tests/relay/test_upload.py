"""A 1 GiB firmware upload streams through the relay in bounded memory (real TLS and TCP)."""

from __future__ import annotations

import asyncio
import os
import zlib
from pathlib import Path

import h11
import psutil
import pytest

from .helpers import FakePortal, RawServer, Relay

pytestmark = pytest.mark.integration

SIZE = int(os.environ.get("EWSGATE_TEST_UPLOAD_BYTES", str(1 << 30)))
CHUNK = 256 * 1024
#: what the whole test process (client, relay and device together) may grow by
MEMORY_BOUND = 96 * 1024 * 1024


def _payload(index: int) -> bytes:
    return index.to_bytes(8, "big") * (CHUNK // 8)


async def test_one_gib_upload_in_bounded_memory(tmp_path: Path, portal: FakePortal) -> None:
    received = {"bytes": 0, "crc": 0}

    async def firmware_sink(reader, writer) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(CHUNK))
            elif isinstance(event, h11.Data):
                received["bytes"] += len(event.data)
                received["crc"] = zlib.crc32(event.data, received["crc"])
            elif isinstance(event, h11.EndOfMessage):
                break
        body = f"{received['bytes']} {received['crc']}".encode()
        writer.write(conn.send(h11.Response(status_code=200, headers=[
            ("Content-Length", str(len(body))), ("Content-Type", "text/plain")])))
        writer.write(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        await writer.drain()

    process = psutil.Process()
    peak = {"rss": 0}

    async def sample() -> None:
        while True:
            peak["rss"] = max(peak["rss"], process.memory_info().rss)
            await asyncio.sleep(0.05)

    async with RawServer(firmware_sink) as device, \
            Relay(tmp_path, portal, body_timeout=60) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        baseline = process.memory_info().rss
        sampler = asyncio.create_task(sample())
        started = asyncio.get_running_loop().time()
        reader, writer = await relay.connect(sid)
        writer.write((f"POST /upload HTTP/1.1\r\nHost: {relay.host(sid)}\r\nCookie: {cookie}\r\n"
                      f"Origin: https://{relay.host(sid)}\r\nContent-Type: application/octet-stream"
                      f"\r\nContent-Length: {SIZE}\r\n\r\n").encode())
        crc = 0
        for index in range(SIZE // CHUNK):
            chunk = _payload(index)
            crc = zlib.crc32(chunk, crc)
            writer.write(chunk)
            await writer.drain()
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method="POST", target="/", headers=[("Host", "x"),
                                                                  ("Content-Length", "0")]))
        conn.send(h11.EndOfMessage())
        status, body = 0, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await asyncio.wait_for(reader.read(65536), 60))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            else:
                break
        elapsed = asyncio.get_running_loop().time() - started
        sampler.cancel()
        writer.close()
    assert status == 200
    assert body == f"{SIZE} {crc}".encode()
    growth = peak["rss"] - baseline
    print(f"\nupload of {SIZE / 2**20:.0f} MiB: {elapsed:.1f} s "
          f"({SIZE / 2**20 / elapsed:.0f} MiB/s), RSS growth {growth / 2**20:.1f} MiB")
    assert growth < MEMORY_BOUND, f"memory grew by {growth / 2**20:.0f} MiB during the upload"


async def test_slow_browser_download_is_back_pressured(tmp_path: Path, portal: FakePortal) -> None:
    """A device sending faster than the browser reads must not fill the relay's memory."""
    size = 128 * 1024 * 1024
    sent = {"bytes": 0}

    async def fast_device(reader, writer) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: %d\r\n\r\n" % size)
        piece = b"\x00" * CHUNK
        while sent["bytes"] < size:
            writer.write(piece)
            sent["bytes"] += len(piece)
            await writer.drain()

    process = psutil.Process()
    async with RawServer(fast_device) as device, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        baseline = process.memory_info().rss
        reader, writer = await relay.connect(sid)
        writer.write(f"GET /big HTTP/1.1\r\nHost: {relay.host(sid)}\r\nCookie: {cookie}\r\n\r\n"
                     .encode())
        await writer.drain()
        await asyncio.sleep(1.0)  # the browser reads nothing for a second
        stalled_at = sent["bytes"]
        grown = process.memory_info().rss - baseline
        received = 0
        while received < size:
            chunk = await asyncio.wait_for(reader.read(1 << 20), 30)
            assert chunk
            received += len(chunk)
        writer.close()
    assert stalled_at < 32 * 1024 * 1024, "the device kept sending while the browser was stalled"
    assert grown < 48 * 1024 * 1024
    assert received >= size
