"""A small HTTP CONNECT proxy for the tests (asyncio, loopback): Basic credentials required,
every CONNECT recorded, bytes piped both ways. It stands in for a site's outbound proxy."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass, field


@dataclass
class ConnectProxy:
    username: str = "site"
    password: str = "s3cret:pw"
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    tunnels: int = 0
    port: int = 0
    _server: asyncio.base_events.Server | None = None
    _tasks: set[asyncio.Task] = field(default_factory=set)
    #: tunnels opened before freeze() stop carrying bytes (a silent, dead path: no FIN)
    _frozen: list[asyncio.Event] = field(default_factory=list)

    #: while set, new CONNECTs get 503 (the path to the portal is down)
    refuse_new: bool = False

    def freeze(self) -> None:
        for gate in self._frozen:
            gate.clear()

    @property
    def url(self) -> str:
        from urllib.parse import quote

        user, password = quote(self.username), quote(self.password, safe="")
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    async def start(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in lines[1:] if line)}
            auth = headers.get("proxy-authorization")
            self.requests.append((f"{method} {target}", auth))
            expected = "Basic " + base64.b64encode(
                f"{self.username}:{self.password}".encode()).decode()
            if method != "CONNECT":
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            if auth != expected:
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Proxy-Authenticate: Basic realm=\"test\"\r\n"
                             b"Content-Length: 0\r\n\r\n")
                return
            if self.refuse_new:
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                return
            host, _, port = target.rpartition(":")
            upstream_reader, upstream_writer = await asyncio.open_connection(host.strip("[]"),
                                                                             int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.tunnels += 1
            gate = asyncio.Event()
            gate.set()
            self._frozen.append(gate)
            await asyncio.gather(_pipe(reader, upstream_writer, gate),
                                 _pipe(upstream_reader, writer, gate))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        except asyncio.CancelledError:  # stop(): end quietly (asyncio logs a cancelled handler)
            pass
        finally:
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                gate: asyncio.Event) -> None:
    try:
        while data := await reader.read(65536):
            await gate.wait()  # frozen: hold the bytes, never close
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
