"""Hostile request framing and slow clients: refused clearly, never passed to the device."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from .helpers import FakePortal, RawServer, Relay, Seen, device_app

pytestmark = pytest.mark.integration


def _ok(request, body):
    return 200, [("Content-Type", "text/plain")], b"ok:" + body


async def _signed_in(relay: Relay, device_port: int) -> tuple[str, str]:
    sid = relay.add_device(device_port)
    return sid, await relay.login(sid)


def _head(relay: Relay, sid: str, cookie: str, first_line: str, *extra: str) -> bytes:
    lines = [first_line, f"Host: {relay.host(sid)}", f"Cookie: {cookie}", *extra, "", ""]
    return "\r\n".join(lines).encode()


@pytest.mark.parametrize("case,extra,body,status", [
    ("cl_and_te", ["Content-Length: 4", "Transfer-Encoding: chunked"],
     b"0\r\n\r\nGET /admin HTTP/1.1\r\n\r\n", b"400"),
    ("te_with_junk", ["Transfer-Encoding: chunked, identity"], b"0\r\n\r\n", b"501"),
    ("te_not_chunked", ["Transfer-Encoding: xchunked"], b"0\r\n\r\n", b"501"),
    ("two_te_headers", ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
     b"0\r\n\r\n", b"501"),
    ("conflicting_cl", ["Content-Length: 4", "Content-Length: 5"], b"abcde", b"400"),
    ("cl_list", ["Content-Length: 4, 5"], b"abcde", b"400"),
    ("bad_cl", ["Content-Length: -1"], b"", b"400"),
    ("bad_chunk_size", ["Transfer-Encoding: chunked"], b"zz\r\nabc\r\n0\r\n\r\n", b"400"),
    ("space_before_colon", ["Transfer-Encoding : chunked"], b"0\r\n\r\n", b"400"),
])
async def test_smuggling_attempts_are_refused(
        tmp_path: Path, portal: FakePortal, case: str, extra: list[str], body: bytes,
        status: bytes) -> None:
    seen = Seen()
    async with RawServer(device_app({"/": _ok, "/admin": _ok}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        sid, cookie = await _signed_in(relay, device.port)
        answer = await relay.raw(sid, _head(relay, sid, cookie, "POST / HTTP/1.1",
                                            "Sec-Fetch-Site: same-origin", *extra) + body)
        assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
        assert answer.count(b"HTTP/1.1 ") == 1  # nothing smuggled behind it was answered
        assert all(r.target != b"/admin" for r, _ in seen.requests)
        if case != "bad_chunk_size":
            assert not seen.requests


async def test_duplicate_identical_content_length_is_forwarded_once(
        tmp_path: Path, portal: FakePortal) -> None:
    seen = Seen()
    async with RawServer(device_app({"/": _ok}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        sid, cookie = await _signed_in(relay, device.port)
        answer = await relay.raw(sid, _head(
            relay, sid, cookie, "POST / HTTP/1.1", "Sec-Fetch-Site: same-origin",
            "Content-Length: 3", "Content-Length: 3", "Connection: close") + b"abc")
        assert answer.startswith(b"HTTP/1.1 200")
        request, body = seen.requests[-1]
        assert [v for k, v in request.headers if k == b"content-length"] == [b"3"]
        assert body == b"abc"


async def test_obs_fold_is_unfolded_never_forwarded(tmp_path: Path, portal: FakePortal) -> None:
    seen = Seen()
    async with RawServer(device_app({"/": _ok}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        sid, cookie = await _signed_in(relay, device.port)
        answer = await relay.raw(sid, _head(
            relay, sid, cookie, "GET / HTTP/1.1", "X-Note: first", " Transfer-Encoding: chunked",
            "Connection: close"))
        assert answer.startswith(b"HTTP/1.1 200")
        request, _ = seen.requests[-1]
        headers = dict(request.headers)
        assert b"transfer-encoding" not in headers
        assert headers[b"x-note"] == b"first Transfer-Encoding: chunked"


async def test_absolute_form_target_is_refused(tmp_path: Path, portal: FakePortal) -> None:
    seen = Seen()
    async with RawServer(device_app({"/": _ok}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        sid, cookie = await _signed_in(relay, device.port)
        answer = await relay.raw(sid, _head(relay, sid, cookie,
                                            "GET http://10.0.0.1/ HTTP/1.1"))
        assert answer.startswith(b"HTTP/1.1 400")
        assert not seen.requests


async def test_oversized_headers_get_431(tmp_path: Path, portal: FakePortal) -> None:
    async with RawServer(device_app({"/": _ok}, Seen())) as device, \
            Relay(tmp_path, portal, max_header_bytes=8 * 1024) as relay:
        sid, cookie = await _signed_in(relay, device.port)
        big = [f"X-Pad-{i}: {'a' * 1000}" for i in range(16)]
        answer = await relay.raw(sid, _head(relay, sid, cookie, "GET / HTTP/1.1", *big))
        assert answer.startswith(b"HTTP/1.1 431")


async def test_slow_loris_head_is_cut_at_the_deadline(tmp_path: Path, portal: FakePortal) -> None:
    async with RawServer(device_app({"/": _ok}, Seen())) as device, \
            Relay(tmp_path, portal, header_timeout=0.5) as relay:
        sid = relay.add_device(device.port)
        reader, writer = await relay.connect(sid)
        head = f"GET / HTTP/1.1\r\nHost: {relay.host(sid)}\r\nX-Slow: ".encode()
        writer.write(head)
        closed = False
        received = b""
        for _ in range(40):  # one byte every 0.1 s: each read is quick, the head never ends
            try:
                writer.write(b"a")
                await writer.drain()
            except (ConnectionError, OSError):
                closed = True
                break
            try:
                chunk = await asyncio.wait_for(reader.read(4096), 0.1)
            except TimeoutError:
                continue
            received += chunk
            if not chunk:
                closed = True
                break
        writer.close()
        assert closed, "the relay kept a slow-loris connection open past its header deadline"
        assert received.startswith(b"HTTP/1.1 408")


async def test_idle_connection_is_closed(tmp_path: Path, portal: FakePortal) -> None:
    async with Relay(tmp_path, portal, header_timeout=0.3) as relay:
        reader, writer = await relay.connect("a" * 32)
        assert await asyncio.wait_for(reader.read(100), 5) == b""
        writer.close()
