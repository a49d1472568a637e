"""The child processes of ``bench/tunnel_bench.py``: the HTTP origin, the relay and the agent.

Kept apart from the harness so that a tunnel process imports only what its role needs (the
harness's argparse, subprocess, tempfile... and the origin's response bodies would otherwise be
counted in the tunnel's RSS). Started by the harness as::

    python bench/tunnel_roles.py origin|relay|agent <port file or config json> [--uvloop]

``EWSGATE_BENCH_PROFILE=relay,agent`` profiles those roles (CPU time, cProfile) and writes
``/tmp/bench-<role>.prof`` when they are stopped; SIGUSR1 prints every tunnel connection's
windows and buffers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, cast


def _use_uvloop(flag: bool) -> None:
    if flag:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class _OriginProtocol(asyncio.Protocol):
    """Keep-alive HTTP/1.1: /1k, /64k and /bulk/<bytes> (streamed with back-pressure)."""

    BODIES: dict[bytes, bytes] = {}  # filled by _origin(): only the origin process holds them
    CHUNK = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: Any = transport
        self.buf = b""
        self.bulk_left = 0
        self.paused = False
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            if path.startswith(b"/bulk/"):
                self.bulk_left = int(path[6:])
                self.t.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.bulk_left)
                self._pump()
                continue
            body = self.BODIES.get(path, b"")
            self.t.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    def _pump(self) -> None:
        while self.bulk_left and not self.paused:
            piece = self.CHUNK if self.bulk_left >= len(self.CHUNK) else \
                self.CHUNK[:self.bulk_left]
            self.t.write(piece)
            self.bulk_left -= len(piece)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._pump()


async def _origin(port_file: Path) -> None:
    _OriginProtocol.BODIES = {b"/1k": os.urandom(1024), b"/64k": os.urandom(65536)}
    _OriginProtocol.CHUNK = os.urandom(1 << 20)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_OriginProtocol, "127.0.0.1", 0, backlog=1024)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    await asyncio.Event().wait()


async def _relay(cfg: dict[str, Any]) -> None:
    from joserfc.jwk import KeySet

    from ewsgate.aio.splice import SpliceProtocol
    from ewsgate.relay.registry import TunnelRegistry
    from ewsgate.relay.tickets import StaticKeySource, TicketVerifier
    from ewsgate.relay.tunnel_server import TunnelServer, TunnelServerConfig

    tmp = Path(cfg["tmp"])
    keys = KeySet.import_key_set(json.loads((tmp / "jwks.json").read_text()))
    verifier = TicketVerifier(relay_id="bench-relay", portal_url="https://portal.bench",
                              keys=StaticKeySource(keys))
    registry = TunnelRegistry()
    server = TunnelServer(TunnelServerConfig(cert_file=tmp / "relay.crt",
                                             key_file=tmp / "relay.key",
                                             client_ca_file=tmp / "ca.crt"),
                          verifier, registry)
    _, tunnel_port = await server.start()
    loop = asyncio.get_running_loop()

    tasks: set[asyncio.Task[None]] = set()

    class Front(asyncio.Protocol):
        """Each accepted connection becomes one tunnel stream to the device's endpoint 0."""

        def __init__(self) -> None:
            self.early: list[bytes] = []  # bytes that arrive before the stream is open
            self.eof = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            tcp = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
            tcp.pause_reading()  # (uvloop may still deliver data: kept in self.early)
            task = loop.create_task(self._open(tcp))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        def data_received(self, data: bytes) -> None:
            self.early.append(data)

        def eof_received(self) -> bool:
            self.eof = True
            return True

        async def _open(self, transport: asyncio.Transport) -> None:
            try:
                stream = await registry.open_tunnel_stream("bench-0", 0)
            except Exception:
                transport.abort()
                return
            splice = SpliceProtocol(stream)
            transport.set_protocol(splice)
            splice.connection_made(transport)
            splice.start()
            for data in self.early:
                splice.data_received(data)
            if self.eof:
                splice.eof_received()
            transport.resume_reading()

    front = await loop.create_server(Front, "127.0.0.1", 0, backlog=1024)
    (tmp / "relay.json").write_text(json.dumps({
        "tunnel_port": tunnel_port, "front_port": front.sockets[0].getsockname()[1]}))
    await asyncio.Event().wait()


async def _agent(cfg: dict[str, Any]) -> None:
    from ewsgate.agent.dialer import (
        ALLOW_LOOPBACK_FOR_TESTS,
        DeviceEndpoint,
        DeviceTarget,
        DialPolicy,
    )
    from ewsgate.agent.tunnel_client import SessionSpec, TunnelClient, TunnelClientConfig

    tmp = Path(cfg["tmp"])
    relay = json.loads((tmp / "relay.json").read_text())
    client = TunnelClient(TunnelClientConfig(
        cert_file=tmp / "agent.crt", key_file=tmp / "agent.key", relay_ca_file=tmp / "ca.crt",
        dial_policy=DialPolicy(allow_loopback=ALLOW_LOOPBACK_FOR_TESTS),
        # wrk drives up to 256 connections through one session; a site agent caps at 32
        max_device_connections=1024))
    device = DeviceTarget(ip="127.0.0.1",
                          endpoints=(DeviceEndpoint("http", cfg["origin_port"]),))
    for index, ticket in enumerate(cfg["tickets"][:cfg["sessions"]]):
        if index < cfg.get("first", 0):
            continue
        await client.open_session(SessionSpec(
            session_id=f"bench-{index}", relay_host="127.0.0.1",
            relay_port=relay["tunnel_port"], ticket=ticket, device=device,
            expires_at=time.time() + 1700))
        (tmp / "agent.ready").write_text(str(index + 1))
    await asyncio.Event().wait()


def child_main(role: str, arg: str, uvloop_on: bool) -> None:
    _use_uvloop(uvloop_on)
    profile = os.environ.get("EWSGATE_BENCH_PROFILE")
    if role == "origin":
        coro = _origin(Path(arg))
    else:
        cfg = json.loads(Path(arg).read_text())
        coro = _relay(cfg) if role == "relay" else _agent(cfg)
    if profile and role in profile.split(","):
        import cProfile

        prof = cProfile.Profile(time.thread_time)  # CPU time: preemption is not counted
        def dump(*_: object) -> None:
            prof.disable()
            prof.dump_stats(f"/tmp/bench-{role}.prof")
            os._exit(0)

        signal.signal(signal.SIGTERM, dump)
        prof.enable()
    signal.signal(signal.SIGUSR1, lambda *_: _dump_state())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_orphan_guard(coro))


async def _orphan_guard(coro: Any) -> None:
    """Run ``coro``; exit when the benchmark process that started us is gone."""
    parent = os.getppid()
    task = asyncio.ensure_future(coro)
    while not task.done():
        if os.getppid() != parent:
            os._exit(0)
        await asyncio.wait([task], timeout=0.5)
    task.result()


def _dump_state() -> None:
    """SIGUSR1: print every tunnel connection's windows and buffers (stall diagnosis)."""
    import gc

    from ewsgate.aio.connection import TunnelConnection
    from ewsgate.aio.splice import SpliceProtocol

    for obj in gc.get_objects():
        if isinstance(obj, TunnelConnection):
            core = obj.core
            print("conn", obj.role, "paused", obj._paused, "blocked", len(obj._blocked),
                  "send", core._conn_send_window, "recv", core._conn_recv_window,
                  "tbuf", obj._transport.get_write_buffer_size() if obj._transport else None,
                  flush=True)
            for sid, st in obj._streams.items():
                cs = core._streams.get(sid)
                print("  stream", sid, cs and (cs.state, cs.send_window, cs.recv_window,
                                               cs.unacked),
                      st.pending_size, st.buffered, st._sink_paused, st._sink_unacked, flush=True)
        elif isinstance(obj, SpliceProtocol):
            t = obj.transport
            print("  splice", obj.stream.stream_id, "reading_paused", obj._reading_paused,
                  "tbuf", t.get_write_buffer_size() if t else None, flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    child_main(sys.argv[1], sys.argv[2], "--uvloop" in sys.argv)
