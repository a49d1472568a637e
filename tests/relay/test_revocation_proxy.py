"""The browser side of revocation: a session ended here cuts its live browser connections and
answers "ended" from then on; new sign-ins are refused while the portal is unreachable, and
sessions already signed in keep running (real TLS on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import h11
import pytest

from .helpers import FakePortal, RawServer, Relay, Seen, device_app

pytestmark = pytest.mark.integration

UNREACHABLE = "the relay has not heard from the portal for 31 s"


def _ok(request, body):
    return 200, [("Content-Type", "text/plain")], b"page"


async def test_sign_in_is_refused_while_the_portal_is_unreachable(tmp_path: Path,
                                                                  portal: FakePortal) -> None:
    seen = Seen()
    async with RawServer(device_app({"/": _ok}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        signed_in = relay.add_device(device.port)
        cookie = await relay.login(signed_in)
        fresh = relay.add_device(device.port)
        first = await relay.fetch(fresh, "GET", "/")  # a sign-in would start here
        assert first.status == 302
        relay.proxy.sign_in_refusal = lambda: UNREACHABLE
        refused = await relay.fetch(fresh, "GET", "/")
        assert refused.status == 503 and refused.header("location") is None
        assert UNREACHABLE.encode() in refused.body
        callback = await relay.fetch(fresh, "GET", "/.ewsgate/callback?code=x&state=y")
        assert callback.status == 503
        # a session already signed in keeps working until its own end
        live = await relay.fetch(signed_in, "GET", "/", cookie=cookie)
        assert live.status == 200 and live.body == b"page"
        relay.proxy.sign_in_refusal = lambda: None
        assert (await relay.fetch(fresh, "GET", "/")).status == 302


async def test_ending_a_session_cuts_its_live_connections(tmp_path: Path,
                                                          portal: FakePortal) -> None:
    seen = Seen()
    async with RawServer(device_app({"/": _ok}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        other = relay.add_device(device.port)
        cookie = await relay.login(sid)
        other_cookie = await relay.login(other)
        reader, writer = await relay.connect(sid)
        conn = h11.Connection(h11.CLIENT)
        writer.write(conn.send(h11.Request(method="GET", target="/", headers=[
            ("Host", relay.host(sid)), ("Cookie", cookie)])))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        answered = b""
        while b"page" not in answered:
            answered += await asyncio.wait_for(reader.read(65536), 5)
        assert answered.startswith(b"HTTP/1.1 200")  # kept alive, idle now
        loop = asyncio.get_running_loop()
        at = loop.time()
        await relay.proxy.end_session(sid, "ended by its owner")
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError, OSError)):
            while True:
                if not await asyncio.wait_for(reader.read(65536), 2):
                    raise ConnectionError("closed by the relay")
        assert loop.time() - at < 2
        writer.close()
        again = await relay.fetch(sid, "GET", "/", cookie=cookie)
        assert again.status == 410 and b"has ended" in again.body
        # another session is untouched
        assert (await relay.fetch(other, "GET", "/", cookie=other_cookie)).status == 200


def test_a_portal_bound_below_the_heartbeat_is_refused_at_start(tmp_path: Path, capsys) -> None:
    from ewsgate.cli import main

    tmp_path.mkdir(parents=True, exist_ok=True)
    for name in ("browser-cert.pem", "browser-key.pem", "tunnel-cert.pem", "tunnel-key.pem",
                 "ca.pem"):
        (tmp_path / name).write_text("placeholder-never-loaded")
    code = main(["relay", "--portal-url", "https://portal.example", "--data-dir", str(tmp_path),
                 "--relay-id", "1", "--relay-secret", "s", "--portal-unreachable-after", "5s"])
    assert code == 2
    assert "--portal-unreachable-after" in capsys.readouterr().err
