"""The simulated printer's HTTP framing quirks (``legacyhttp``) through the relay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import h11
import pytest

from ewsgate.config import HostPort
from ewsgate.devicesim.device import RunningDevice, start_device
from ewsgate.relay.upstream import Endpoint

from .helpers import FakePortal, Relay

pytestmark = pytest.mark.integration


@pytest.fixture
async def legacy() -> AsyncIterator[RunningDevice]:
    device = await start_device("legacyhttp", http=HostPort("127.0.0.1", 0),
                                large_log_bytes=3 * 1024 * 1024)
    try:
        yield device
    finally:
        await device.close()


async def _get(relay: Relay, sid: str, cookie: str, path: str, version: str = "1.1"
               ) -> tuple[int, dict[bytes, bytes], bytes, bool]:
    """(status, headers, body, complete) as a strict HTTP client sees the relay's answer."""
    reader, writer = await relay.connect(sid)
    writer.write(f"GET {path} HTTP/{version}\r\nHost: {relay.host(sid)}\r\nCookie: {cookie}\r\n"
                 "\r\n".encode())
    await writer.drain()
    conn = h11.Connection(h11.CLIENT)
    # the parser only needs the method; a response without length is read to EOF anyway
    conn.send(h11.Request(method="GET", target=path, headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    status, headers, body, complete = 0, {}, b"", False
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                status, headers = event.status_code, dict(event.headers)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                complete = True
                break
            else:
                break
    except (h11.RemoteProtocolError, ConnectionError):
        complete = False  # a close mid-body, or the reset the relay sends to say so
    writer.close()
    return status, headers, body, complete


async def test_framing_quirks_are_reframed_correctly(
        tmp_path: Path, portal: FakePortal, legacy: RunningDevice) -> None:
    assert legacy.http is not None
    async with Relay(tmp_path, portal) as relay:
        sid = relay.add_device(legacy.http.port, ip="127.0.0.1",
                               endpoints=(Endpoint("http", legacy.http.port),))
        cookie = await relay.login(sid)
        # HTTP/1.0 ended by EOF → chunked to an HTTP/1.1 browser, complete
        status, headers, body, complete = await _get(relay, sid, cookie, "/status.html")
        assert status == 200 and complete and b"</html>" in body
        assert headers.get(b"transfer-encoding") == b"chunked"
        # chunked answered to an HTTP/1.0 browser → close-delimited, complete
        status, headers, body, complete = await _get(relay, sid, cookie, "/chunked.html", "1.0")
        assert status == 200 and complete and b"transfer-encoding" not in headers
        # Content-Length and chunked together: never both forwarded
        status, headers, body, complete = await _get(relay, sid, cookie, "/both.html")
        assert status == 200 and complete
        assert not (b"content-length" in headers and b"transfer-encoding" in headers)
        # truncated chunked: what came is passed on, but never as a complete message
        status, headers, body, complete = await _get(relay, sid, cookie, "/http10-chunked.html")
        assert status == 200 and not complete and body
        # the large log, EOF-ended, arrives whole
        status, headers, body, complete = await _get(relay, sid, cookie, "/logs/full-eof.log")
        assert status == 200 and complete and len(body) == 3 * 1024 * 1024
