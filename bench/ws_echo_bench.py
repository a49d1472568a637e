"""WebSocket echo through the relay's browser side: round trips per second and MB/s.

Three processes on loopback: a WebSocket echo device (wsproto over plain TCP), the relay's
browser side (:class:`ewsgate.relay.http_proxy.RelayProxy` over real TLS, a real
:class:`~ewsgate.relay.browser_auth.BrowserAuth` cookie, a static directory pointing at the
device) and this process as the browser (wsproto over a TLS socket). Side by side, the same
client talks to the echo device directly (plain TCP), so the relay's cost is the difference.

Rows:

* ``round trips/s``: one connection, one 32-byte text message at a time, echoed;
* ``MB/s``: one connection, 64 KiB binary messages, up to 8 in flight;
* the relay process's CPU time per round trip and per MB (user + system, from ``/proc``):
  the figure that holds still when the machine is shared, unlike the rates.

Run: ``.venv/bin/python bench/ws_echo_bench.py [--seconds 3]``. Bounded: at most 30 s per row
and 1,000,000 messages; both child processes are stopped in ``finally``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from wsproto import ConnectionType, WSConnection  # noqa: E402
from wsproto.events import (  # noqa: E402
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Request,
    TextMessage,
)

DOMAIN = "rt.localhost"
SESSION_ID = "benchbenchbenchbenchbenchbench23"
MAX_MESSAGES = 1_000_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    ws = WSConnection(ConnectionType.SERVER)
    try:
        while data := await reader.read(65536):
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, Request):
                    writer.write(ws.send(AcceptConnection()))
                elif isinstance(event, TextMessage | BytesMessage):
                    writer.write(ws.send(Message(data=event.data,
                                                 message_finished=event.message_finished)))
                elif isinstance(event, Ping):
                    writer.write(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    writer.write(ws.send(event.response()))
                    await writer.drain()
                    return
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def _device_main(port: int) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_echo, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _relay_main(port: int, device_port: int, cert_dir: str) -> None:
    from ewsgate.relay.access_log import AccessLog
    from ewsgate.relay.browser_auth import BrowserAuth, OAuthClientConfig
    from ewsgate.relay.clock import SystemClock
    from ewsgate.relay.http_proxy import ProxyConfig, RelayProxy
    from ewsgate.relay.upstream import DeviceView, Endpoint, SessionInfo, StaticDirectory

    async def main() -> None:
        import httpx

        clock = SystemClock()
        config = ProxyConfig(domain=DOMAIN, portal_url="http://127.0.0.1:9", public_port=port)
        directory = StaticDirectory()
        now = clock.now()
        directory.add(SessionInfo(session_id=SESSION_ID, expires_at=now + 1800,
                                  device=DeviceView(ip="10.0.0.5", hostname=None,
                                                    endpoints=(Endpoint("http", 80),)),
                                  started_at=now), [("127.0.0.1", device_port)])
        http = httpx.AsyncClient()
        auth = BrowserAuth(OAuthClientConfig(relay_id="1", relay_secret="s",
                                             portal_url="http://127.0.0.1:9",
                                             cookie_key=b"b" * 32),
                           session_host=config.session_host, clock=clock, keys=None,  # type: ignore[arg-type]
                           http=http)
        log = AccessLog(Path(cert_dir) / "spool", None)
        proxy = RelayProxy(config, directory, auth, log, clock)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(Path(cert_dir) / "cert.pem", Path(cert_dir) / "key.pem")
        server = await asyncio.start_server(proxy.handle, "127.0.0.1", port, ssl=ctx)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _cookie() -> str:
    from ewsgate.relay.browser_auth import BrowserAuth, Identity, OAuthClientConfig
    from ewsgate.relay.clock import SystemClock

    auth = BrowserAuth(OAuthClientConfig(relay_id="1", relay_secret="s",
                                         portal_url="http://127.0.0.1:9", cookie_key=b"b" * 32),
                       session_host=lambda sid: sid, clock=SystemClock(), keys=None,  # type: ignore[arg-type]
                       http=None)  # type: ignore[arg-type]
    value = auth.make_cookie_value(Identity(session_id=SESSION_ID, user_id="1",
                                            email="bench@example.com",
                                            expires_at=time.time() + 1700))
    return f"__Host-ewsgate_rt={value}"


class Client:
    """A blocking WebSocket client (wsproto over a socket, TLS or not)."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket, host: str,
                 headers: list[tuple[str, str]]) -> None:
        self.sock = sock
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=host, target="/ws",
                                               extra_headers=headers)))
        while not any(isinstance(e, AcceptConnection) for e in self._events()):
            pass

    def _events(self) -> list[Any]:
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("closed")
        self.ws.receive_data(data)
        return list(self.ws.events())

    def send(self, message: str | bytes) -> None:
        self.sock.sendall(self.ws.send(Message(data=message)))

    def receive_messages(self) -> int:
        """Complete messages in the next read."""
        return sum(1 for e in self._events() if isinstance(e, TextMessage | BytesMessage)
                   and e.message_finished)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
        self.sock.close()


def _cpu(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` (0 when not measured)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _round_trips(client: Client, seconds: float) -> tuple[float, int]:
    count, started = 0, time.perf_counter()
    deadline = started + seconds
    while count < MAX_MESSAGES and time.perf_counter() < deadline:
        client.send("x" * 32)
        while not client.receive_messages():
            pass
        count += 1
    return count / (time.perf_counter() - started), count


def _throughput(client: Client, seconds: float) -> tuple[float, float]:
    payload = os.urandom(65536)
    sent = received = 0
    started = time.perf_counter()
    deadline = started + seconds
    while sent < MAX_MESSAGES and time.perf_counter() < deadline:
        while sent - received < 8:
            client.send(payload)
            sent += 1
        received += client.receive_messages()
    while received < sent:
        received += client.receive_messages()
    megabytes = received * len(payload) / 1e6
    return megabytes / (time.perf_counter() - started), megabytes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    seconds = min(max(args.seconds, 0.5), 30.0)
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert(f"*.{DOMAIN}")
    with tempfile.TemporaryDirectory() as tmp:
        cert.private_key_pem.write_to_path(Path(tmp) / "key.pem")
        cert.cert_chain_pems[0].write_to_path(Path(tmp) / "cert.pem")
        device_port, relay_port = _free_port(), _free_port()
        spawn = multiprocessing.get_context("spawn")
        procs = [spawn.Process(target=_device_main, args=(device_port,), daemon=True),
                 spawn.Process(target=_relay_main, args=(relay_port, device_port, tmp),
                               daemon=True)]
        for proc in procs:
            proc.start()
        try:
            host = f"s-{SESSION_ID}.{DOMAIN}:{relay_port}"
            client_ctx = ssl.create_default_context()
            ca.configure_trust(client_ctx)
            rows: dict[str, list[float]] = {}
            for label, pid, make in (
                ("direct (TCP to the device)", None, lambda: Client(
                    socket.create_connection(("127.0.0.1", device_port)), "10.0.0.5", [])),
                ("through the relay (TLS, cookie)", procs[1].pid, lambda: Client(
                    client_ctx.wrap_socket(socket.create_connection(("127.0.0.1", relay_port)),
                                           server_hostname=f"s-{SESSION_ID}.{DOMAIN}"),
                    host, [("Cookie", _cookie()), ("Origin", f"https://{host}")])),
            ):
                for _ in range(100):
                    try:
                        client = make()
                        break
                    except OSError:
                        time.sleep(0.1)
                else:
                    raise RuntimeError(f"{label}: could not connect")
                try:
                    cpu = _cpu(pid)
                    rate, count = _round_trips(client, seconds)
                    cpu_rt = (_cpu(pid) - cpu) / count * 1e6
                    cpu = _cpu(pid)
                    mbs, megabytes = _throughput(client, seconds)
                    cpu_mb = (_cpu(pid) - cpu) / megabytes * 1e3
                    rows[label] = [rate, mbs, cpu_rt, cpu_mb]
                finally:
                    client.close()
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.join(5)
    print("| path | 32 B round trips/s | 64 KiB messages MB/s | relay CPU µs / round trip "
          "| relay CPU ms / MB |")
    print("|---|---|---|---|---|")
    for label, (rate, mbs, cpu_rt, cpu_mb) in rows.items():
        relay_cpu = (f"{cpu_rt:.0f} | {cpu_mb:.2f}" if "relay" in label else " | ")
        print(f"| {label} | {rate:.0f} | {mbs:.1f} | {relay_cpu} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
