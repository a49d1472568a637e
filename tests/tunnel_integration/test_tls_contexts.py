"""The tunnel TLS contexts: mutual TLS 1.3 and the direct SSL object the event loop drives.

Both ends run over memory BIOs here (the way asyncio's and uvloop's TLS layers use them), so
the handshake, a record-by-record read into a caller's buffer and ``pending`` are checked
without sockets.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ssl
from pathlib import Path

from ewsgate import pki
from ewsgate.aio.tls import agent_tunnel_context, peer_installation_id, relay_tunnel_context


def _contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    now = dt.datetime.now(dt.UTC)
    ca = pki.create_ca(now=now)
    relay = ca.issue_server_cert(ip_addresses=["127.0.0.1"], now=now)
    inst = ca.issue_installation_cert("inst-tls", now=now)
    files = {"ca.crt": ca.cert_pem,
             "relay.crt": pki.cert_to_pem(relay.cert), "relay.key": pki.key_to_pem(relay.key),
             "agent.crt": pki.cert_to_pem(inst.cert), "agent.key": pki.key_to_pem(inst.key)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    server = relay_tunnel_context(tmp_path / "relay.crt", tmp_path / "relay.key",
                                  tmp_path / "ca.crt")
    client = agent_tunnel_context(tmp_path / "agent.crt", tmp_path / "agent.key",
                                  tmp_path / "ca.crt")
    return server, client


def _pump(src: ssl.MemoryBIO, dst: ssl.MemoryBIO) -> None:
    if src.pending:
        dst.write(src.read())


def test_direct_ssl_object_handshake_and_records(tmp_path: Path) -> None:
    server_ctx, client_ctx = _contexts(tmp_path)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    assert type(client).__name__ == type(server).__name__ == "_DirectSSLObject"
    for _ in range(10):
        for end in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
        _pump(c_out, s_in)
        _pump(s_out, c_in)
    assert client.version() == server.version() == "TLSv1.3"
    assert peer_installation_id(server) == "inst-tls"

    payload = bytes(range(256)) * 200  # 51,200 bytes: four TLS records
    assert client.write(memoryview(payload)) == len(payload)
    _pump(c_out, s_in)
    buffer = bytearray(len(payload))
    got = 0
    while got < len(payload):
        got += server.read(len(payload) - got, memoryview(buffer)[got:])
    assert bytes(buffer) == payload
    assert server.pending() == 0

    assert server.write(b"pong") == 4
    _pump(s_out, c_in)
    # the session tickets TLS 1.3 servers send after the handshake are consumed on the way
    assert client.read(1024) == b"pong"
