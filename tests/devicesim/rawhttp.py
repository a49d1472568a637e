"""A tiny raw-socket HTTP client for responses no well-behaved client library would accept."""

from __future__ import annotations

import asyncio


async def raw_exchange(port: int, request: bytes, *, timeout: float = 10.0,
                       half_close: bool = False) -> bytes:
    """Send ``request`` bytes (then EOF if ``half_close``) and read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        if half_close:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(-1), timeout)
    finally:
        writer.close()


def split_response(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    """Status line, headers (lower-case names, last wins) and the raw body bytes."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, body


def dechunk(body: bytes) -> tuple[bytes, int, bool]:
    """Decode chunked coding: (payload, number of data chunks, whether the 0 chunk came)."""
    payload, count = [], 0
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return b"".join(payload), count, True
        payload.append(rest[:size])
        count += 1
        body = rest[size + 2 :]
    return b"".join(payload), count, False
