"""The legacyhttp profile's framing quirks and the server's HTTP/1.1 basics, over raw sockets."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from .rawhttp import dechunk, raw_exchange, split_response

pytestmark = pytest.mark.integration


def get(path: str, version: str = "1.1", extra: str = "") -> bytes:
    return f"GET {path} HTTP/{version}\r\nHost: printer\r\n{extra}\r\n".encode()


async def test_status_page_is_http10_without_length_and_ends_at_eof(device_factory) -> None:
    device = await device_factory("legacyhttp")
    raw = await raw_exchange(device.http.port, get("/status.html"))
    status, headers, body = split_response(raw)
    assert status == "HTTP/1.0 200 OK"
    assert "content-length" not in headers and "transfer-encoding" not in headers
    assert body.rstrip().endswith(b"</html>") and device.config.serial.encode() in body


async def test_redirect_after_post_is_eof_framed_too(device_factory) -> None:
    device = await device_factory("legacyhttp")
    form = b"location=Basement"
    raw = await raw_exchange(device.http.port, (
        b"POST /settings.html HTTP/1.1\r\nHost: p\r\nContent-Type: application/x-www-form-"
        b"urlencoded\r\nContent-Length: %d\r\n\r\n%s" % (len(form), form)))
    status, headers, _ = split_response(raw)
    assert status.startswith("HTTP/1.0 302") and headers["location"] == "/settings.html?saved=1"
    page = await raw_exchange(device.http.port, get("/settings.html?saved=1"))
    assert b'value="Basement"' in page


async def test_chunked_is_sent_even_to_an_http10_client(device_factory) -> None:
    device = await device_factory("legacyhttp")
    raw = await raw_exchange(device.http.port, get("/chunked.html", "1.0"))
    status, headers, body = split_response(raw)
    assert status == "HTTP/1.1 200 OK" and headers["transfer-encoding"] == "chunked"
    payload, count, finished = dechunk(body)
    assert finished and count >= 8 and b"chunk 8" in payload and payload.endswith(b"</html>")


async def test_both_length_and_chunked_with_length_of_the_decoded_body(device_factory) -> None:
    device = await device_factory("legacyhttp")
    raw = await raw_exchange(device.http.port, get("/both.html"))
    _, headers, body = split_response(raw)
    assert headers["transfer-encoding"] == "chunked"
    payload, _, finished = dechunk(body)
    assert finished and int(headers["content-length"]) == len(payload)


async def test_http10_chunked_body_never_gets_its_last_chunk(device_factory) -> None:
    device = await device_factory("legacyhttp")
    raw = await raw_exchange(device.http.port, get("/http10-chunked.html"))
    status, headers, body = split_response(raw)
    assert status.startswith("HTTP/1.0 200") and headers["transfer-encoding"] == "chunked"
    payload, count, finished = dechunk(body)
    assert count == 1 and not finished and b"truncated" in payload


async def test_slow_page_waits_before_the_first_byte(device_factory) -> None:
    device = await device_factory("legacyhttp", slow_seconds=0.6)
    reader, writer = await asyncio.open_connection("127.0.0.1", device.http.port)
    started = time.monotonic()
    writer.write(get("/slow.html"))
    first = await asyncio.wait_for(reader.read(1), 10)
    waited = time.monotonic() - started
    writer.close()
    assert first == b"H" and waited >= 0.55
    raw = await raw_exchange(device.http.port, get("/slow.html?seconds=0"))
    assert b"took 0 s" in raw


async def test_large_log_is_streamed_with_its_length(device_factory) -> None:
    device = await device_factory("legacyhttp", large_log_bytes=6_000_000)
    async with httpx.AsyncClient() as client, client.stream(
            "GET", device.url("http", "/logs/full.log")) as response:
        assert response.headers["content-length"] == "6000000"
        size, lines = 0, 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")
    assert size == 6_000_000 and lines == 60_000


async def test_large_log_without_length_ends_at_eof(device_factory) -> None:
    device = await device_factory("legacyhttp")
    raw = await raw_exchange(device.http.port, get("/logs/full-eof.log?bytes=1234567"))
    status, headers, body = split_response(raw)
    assert status.startswith("HTTP/1.0 200") and "content-length" not in headers
    assert len(body) == 1234567


async def test_standard_responses_keep_the_connection_alive(device_factory) -> None:
    device = await device_factory("panel")
    raw = await raw_exchange(device.http.port, get("/status.html") + get(
        "/settings.html", extra="Connection: close\r\n"))
    assert raw.count(b"HTTP/1.1 200 OK") == 2


async def test_expect_100_continue_is_answered(device_factory) -> None:
    device = await device_factory("panel")
    reader, writer = await asyncio.open_connection("127.0.0.1", device.http.port)
    writer.write(b"POST /settings.html HTTP/1.1\r\nHost: p\r\nContent-Length: 13\r\n"
                 b"Content-Type: application/x-www-form-urlencoded\r\nExpect: 100-continue\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert interim.startswith(b"HTTP/1.1 100")
    writer.write(b"location=Roof")
    final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    assert final.startswith(b"HTTP/1.1 303")


async def test_head_has_headers_and_no_body(device_factory) -> None:
    device = await device_factory("panel")
    raw = await raw_exchange(device.http.port, b"HEAD /status.html HTTP/1.1\r\nHost: p\r\n"
                             b"Connection: close\r\n\r\n")
    status, headers, body = split_response(raw)
    assert status == "HTTP/1.1 200 OK" and int(headers["content-length"]) > 1000 and body == b""


async def test_malformed_request_gets_400(device_factory) -> None:
    device = await device_factory("panel")
    raw = await raw_exchange(device.http.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400")


async def test_malformed_inputs_never_take_the_listener_down(device_factory) -> None:
    device = await device_factory("legacyhttp")
    port = device.http.port
    big_header = b"GET / HTTP/1.1\r\nHost: p\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
    assert (await raw_exchange(port, big_header)).startswith(b"HTTP/1.1 431")
    for junk in (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                 b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                 b"POST /settings.html HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"zz\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64), b""):
        reply = await raw_exchange(port, junk, half_close=True)
        assert reply == b"" or reply.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4"))
    status, _, _ = split_response(await raw_exchange(port, get("/status.html")))
    assert status == "HTTP/1.0 200 OK"


async def test_expect_100_continue_refused_early_gets_no_continue(device_factory) -> None:
    """A 401 to an upload that waits for 100-continue comes without inviting the body."""
    device = await device_factory("sharp")
    reader, writer = await asyncio.open_connection("127.0.0.1", device.http.port)
    writer.write(b"POST /admin/firmware_upload.html HTTP/1.1\r\nHost: p\r\n"
                 b"Content-Type: application/octet-stream\r\nContent-Length: 50000000\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    rest = await asyncio.wait_for(reader.read(-1), 10)
    writer.close()
    assert head.startswith(b"HTTP/1.1 401") and b"connection: close" in head.lower()
    assert b"100 Continue" not in head + rest
