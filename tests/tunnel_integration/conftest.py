"""A real relay tunnel listener and a real agent tunnel client on 127.0.0.1, real TLS.

``world`` builds: a CA (ewsgate.pki), the relay's server certificate, an installation client
certificate, the portal's ES256 signing keys and ticket issuer, a registry, a tunnel server,
an HTTP origin standing in for the printer, and an agent TunnelClient allowed to dial loopback
(the explicit test switch).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ewsgate import pki
from ewsgate.agent.dialer import (
    ALLOW_LOOPBACK_FOR_TESTS,
    DeviceEndpoint,
    DeviceTarget,
    DialPolicy,
)
from ewsgate.agent.tunnel_client import SessionSpec, TunnelClient, TunnelClientConfig
from ewsgate.portal.oauth.keys import SigningKeys
from ewsgate.portal.oauth.tokens import TokenIssuer
from ewsgate.relay.registry import TunnelRegistry
from ewsgate.relay.tickets import StaticKeySource, TicketVerifier
from ewsgate.relay.tunnel_server import TunnelServer, TunnelServerConfig
from ewsgate.revocations import cert_thumbprint

PORTAL = "https://portal.test"
RELAY_ID = "relay-1"
INSTALLATION = "inst-1"
CHUNK = random.Random(7).randbytes(256 * 1024)


def write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


class Origin:
    """A small HTTP/1.1 server standing in for the device's web server.

    ``GET /blob/<size>/<seed>``: deterministic random bytes; ``GET /stream/<size>``: repeated
    pattern (cheap, for GiB transfers); ``POST /sink``: reads Content-Length bytes and answers
    ``<count> <crc32>``.
    """

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.sent: dict[str, int] = {}

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ")
                headers = {k.lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in lines[1:] if line)}
                if method == "POST":
                    remaining = int(headers["content-length"])
                    crc, count = 0, 0
                    while remaining:
                        data = await reader.read(min(remaining, 1 << 20))
                        if not data:
                            return
                        crc = zlib.crc32(data, crc)
                        count += len(data)
                        remaining -= len(data)
                    body = f"{count} {crc}".encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(body), body))
                    await writer.drain()
                    continue
                parts = path.strip("/").split("/")
                if parts[0] == "blob":
                    body = random.Random(int(parts[2])).randbytes(int(parts[1]))
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
                    writer.write(body)
                    await writer.drain()
                elif parts[0] == "stream":
                    size = int(parts[1])
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
                    self.sent[path] = 0
                    while size:
                        piece = CHUNK[:min(size, len(CHUNK))]
                        writer.write(piece)
                        size -= len(piece)
                        self.sent[path] += len(piece)
                        await writer.drain()
                else:
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@dataclass
class World:
    tmp: Path
    ca: pki.CertificateAuthority
    issuer: TokenIssuer
    registry: TunnelRegistry
    server: TunnelServer
    verifier: TicketVerifier
    relay_port: int
    origin: Origin
    agent_cert: Path
    agent_key: Path
    ca_file: Path
    clients: list[TunnelClient] = field(default_factory=list)
    counter: int = 0
    #: x5t#S256 of agent_cert: the tickets' cnf binding
    agent_thumbprint: str = ""

    def device(self, *extra: DeviceEndpoint) -> DeviceTarget:
        return DeviceTarget(ip="127.0.0.1",
                            endpoints=(DeviceEndpoint("http", self.origin.port), *extra))

    def ticket(self, session_id: str, *, relay_id: str = RELAY_ID,
               installation: str = INSTALLATION, ttl: float = 600,
               device: DeviceTarget | None = None, thumbprint: str | None = None) -> str:
        dev = device or self.device()
        now = dt.datetime.now(dt.UTC)
        return self.issuer.tunnel_ticket(
            relay_id=relay_id, installation_id=installation, session_id=session_id,
            expires_at=now + dt.timedelta(seconds=ttl),
            device={"ip": dev.ip, "hostname": dev.hostname,
                    "endpoints": [{"scheme": e.scheme, "port": e.port} for e in dev.endpoints]},
            certificate_thumbprint=thumbprint or self.agent_thumbprint,
        ).token

    def client(self, *, cert: Path | None = None, key: Path | None = None,
               clock: Callable[[], float] = time.time, **kwargs: Any) -> TunnelClient:
        config = TunnelClientConfig(
            cert_file=cert or self.agent_cert, key_file=key or self.agent_key,
            relay_ca_file=self.ca_file,
            dial_policy=DialPolicy(allow_loopback=ALLOW_LOOPBACK_FOR_TESTS), **kwargs)
        client = TunnelClient(config, clock=clock)
        self.clients.append(client)
        return client

    def spec(self, session_id: str | None = None, *, ticket: str | None = None,
             device: DeviceTarget | None = None, ttl: float = 600) -> SessionSpec:
        if session_id is None:
            self.counter += 1
            session_id = f"s{self.counter}"
        return SessionSpec(session_id=session_id, relay_host="127.0.0.1",
                           relay_port=self.relay_port,
                           ticket=ticket or self.ticket(session_id, device=device, ttl=ttl),
                           device=device or self.device(), expires_at=time.time() + ttl)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    now = dt.datetime.now(dt.UTC)
    ca = pki.create_ca(now=now)
    ca_file = write_pem(tmp_path / "ca.crt", ca.cert_pem)
    relay = ca.issue_server_cert(ip_addresses=["127.0.0.1"], dns_names=["localhost"], now=now)
    inst = ca.issue_installation_cert(INSTALLATION, now=now)
    files = {
        "relay.crt": pki.cert_to_pem(relay.cert), "relay.key": pki.key_to_pem(relay.key),
        "agent.crt": pki.cert_to_pem(inst.cert), "agent.key": pki.key_to_pem(inst.key),
    }
    for name, data in files.items():
        write_pem(tmp_path / name, data)
    keys = SigningKeys.open(tmp_path / "portal", lambda: dt.datetime.now(dt.UTC))
    issuer = TokenIssuer(keys, PORTAL, lambda: dt.datetime.now(dt.UTC))
    verifier = TicketVerifier(relay_id=RELAY_ID, portal_url=PORTAL,
                              keys=StaticKeySource(keys.public_key_set()))
    registry = TunnelRegistry()
    server = TunnelServer(TunnelServerConfig(cert_file=tmp_path / "relay.crt",
                                             key_file=tmp_path / "relay.key",
                                             client_ca_file=ca_file), verifier, registry)
    _, port = await server.start()
    origin = Origin()
    await origin.start()
    w = World(tmp=tmp_path, ca=ca, issuer=issuer, registry=registry, server=server,
              verifier=verifier, relay_port=port, origin=origin,
              agent_cert=tmp_path / "agent.crt", agent_key=tmp_path / "agent.key",
              ca_file=ca_file,
              agent_thumbprint=cert_thumbprint(inst.cert.public_bytes(Encoding.DER)))
    try:
        yield w
    finally:
        for client in w.clients:
            await client.close()
        await server.close()
        await origin.close()


async def http_get(stream: object, path: str) -> tuple[bytes, bytes]:
    """Send a GET over a TunnelStream and read the whole response (Connection: close)."""
    from ewsgate.aio.streams import TunnelStream

    assert isinstance(stream, TunnelStream)
    stream.write(f"GET {path} HTTP/1.1\r\nHost: device\r\n\r\n".encode())
    await stream.drain()
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = await stream.read()
        assert chunk, f"stream ended before the headers: {buf!r}"
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    parts = [body]
    got = len(body)
    while got < length:
        chunk = await stream.read(1 << 20)
        assert chunk, f"stream ended after {got} of {length} body bytes"
        parts.append(chunk)
        got += len(chunk)
    return head, b"".join(parts)
