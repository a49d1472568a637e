"""`ewsgate relay` as a real process: the access log survives kill -9 and is re-shipped once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import sys
from pathlib import Path

import pytest
import trustme

from .helpers import DOMAIN, RELAY_ID, RELAY_SECRET, FakePortal

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prepare(data: Path) -> ssl.SSLContext:
    data.mkdir(parents=True)
    ca = trustme.CA()
    browser = ca.issue_cert(f"*.{DOMAIN}")
    browser.cert_chain_pems[0].write_to_path(str(data / "browser-cert.pem"))
    browser.private_key_pem.write_to_path(str(data / "browser-key.pem"))
    tunnel = ca.issue_cert("127.0.0.1", "localhost")
    tunnel.cert_chain_pems[0].write_to_path(str(data / "tunnel-cert.pem"))
    tunnel.private_key_pem.write_to_path(str(data / "tunnel-key.pem"))
    ca.cert_pem.write_to_path(str(data / "ca.pem"))
    (data / "relay.json").write_text(json.dumps({"relay_id": RELAY_ID,
                                                 "relay_secret": RELAY_SECRET}))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return client


async def _start(data: Path, portal: FakePortal, port: int) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ewsgate", "relay", "--listen", f"127.0.0.1:{port}",
        "--tunnel-listen", f"127.0.0.1:{_free_port()}", "--domain", DOMAIN,
        "--portal-url", portal.url, "--data-dir", str(data),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env)
    for _ in range(600):  # up to 60 s: a loaded machine imports slowly
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return process
        if process.returncode is not None:
            break
        await asyncio.sleep(0.1)
    process.kill()
    raise AssertionError("the relay did not start listening")


async def _get(client: ssl.SSLContext, port: int, sid: str, path: str) -> bytes:
    host = f"s-{sid}.{DOMAIN}"
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client,
                                                   server_hostname=host)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
                 .encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.wait()


async def test_access_log_survives_kill_9_and_reships_without_duplicates(
        tmp_path: Path, portal: FakePortal) -> None:
    data = tmp_path / "relay"
    client = _prepare(data)
    port = _free_port()
    a, b = "a" * 32, "b" * 32
    portal.log_status = 503  # the portal is down: entries stay in the spool
    process = await _start(data, portal, port)
    try:
        for i in range(10):
            for sid in (a, b):
                answer = await _get(client, port, sid, f"/page{i}")
                assert answer.startswith(b"HTTP/1.1 404")
        spool = data / "access-log"
        lines = b"".join(p.read_bytes() for p in spool.glob("segment-*")).splitlines()
        assert len(lines) == 20
        process.send_signal(signal.SIGKILL)
        await process.wait()
        assert not portal.log_batches

        portal.log_status = 200
        process = await _start(data, portal, port)
        for _ in range(300):
            if len(portal.entries()) >= 20:
                break
            await asyncio.sleep(0.1)
        await _get(client, port, a, "/after-restart")
        for _ in range(300):
            if len(portal.entries()) >= 21:
                break
            await asyncio.sleep(0.1)
    finally:
        await _stop(process)
    shipped = [e for batch in portal.log_batches for e in batch["entries"]]
    assert len(shipped) == 21 == len(portal.entries())  # nothing lost, nothing twice
    by_session = {sid: [(e["seq"], e["url"]) for e in portal.entries() if e["session_id"] == sid]
                  for sid in (a, b)}
    assert by_session[a] == [*[(i + 1, f"/page{i}") for i in range(10)], (11, "/after-restart")]
    assert by_session[b] == [(i + 1, f"/page{i}") for i in range(10)]
    assert all(e["status"] == 404 and e["outcome"] == "refused" for e in shipped
               if e["url"] != "/after-restart")
