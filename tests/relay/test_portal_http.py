"""Relay → portal connections never pile up in CLOSE-WAIT, against a real uvicorn portal with
its default keep-alive (5 s)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from ewsgate.relay.access_log import AccessLog, PortalLogShipper

pytestmark = pytest.mark.integration

_CLOSE_WAIT = "08"


def _close_wait_to(port: int) -> int:
    """Sockets in CLOSE-WAIT whose peer is 127.0.0.1:``port`` (this machine's /proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state = fields[2], fields[3]
        if state == _CLOSE_WAIT and int(remote.split(":")[1], 16) == port:
            count += 1
    return count


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"accepted": 1}'})


async def test_idle_relay_to_portal_connections_do_not_linger_in_close_wait(
        tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(_app, log_level="warning", lifespan="off")
    assert config.timeout_keep_alive == 5  # the portal's keep-alive, uvicorn's default
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    shipper = PortalLogShipper(f"http://127.0.0.1:{port}", "1", "secret")
    log = AccessLog(tmp_path, shipper, batch_size=1)
    try:
        for _ in range(50):
            if server.started:
                break
            await asyncio.sleep(0.05)
        for i in range(8):  # concurrent batches: several pooled connections at once
            log.record(session_id="a", time=1.0, user=None, method="GET", url=f"/{i}",
                       status=200, bytes_in=0, bytes_out=0, duration_ms=1, outcome="ok")
        await asyncio.gather(*(shipper.ship([{"n": i}]) for i in range(8)))
        while await log.ship_once():
            pass
        await asyncio.sleep(6.0)  # idle past the portal's keep-alive
        assert _close_wait_to(port) == 0
    finally:
        log.close()
        await shipper.aclose()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, 5)
