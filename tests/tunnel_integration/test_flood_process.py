"""A hostile relay floods a real agent process over real TLS on 127.0.0.1.

The relay here is the attacker: it admits the agent's tunnel and then sends 10,000 OPEN+RESET
pairs (the issue's measurement: that made an agent open 10,000 TCP connections to a printer in
7.5 s). The device is a listening socket whose accepts are counted. The agent must answer with
GOAWAY ENHANCE_YOUR_CALM, dial the device a bounded number of times, reconnect at most
``max_violations`` times and then cut the relay for the session, reporting why.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
import sys
from pathlib import Path

import pytest

from ewsgate import pki
from ewsgate.aio.tls import relay_tunnel_context
from ewsgate.tunnel import ErrorCode, ProtocolConfig
from ewsgate.tunnel.frames import (
    FrameParser,
    FrameType,
    encode_hello,
    encode_open,
    encode_reset,
    parse_goaway,
)

from .conftest import write_pem

pytestmark = pytest.mark.integration

PAIRS = 10_000
AGENT = Path(__file__).with_name("flood_agent.py")


class HostileRelay:
    """Admits any agent, then floods OPEN+RESET pairs; records the agent's GOAWAYs."""

    def __init__(self, mode: str) -> None:
        #: "pairs": OPEN and RESET back to back; "split": OPENs, a pause (the agent dials
        #: and accepts), then their RESETs -- never a byte of request
        self.mode = mode
        self.connections = 0
        self.goaways: list[tuple[int, str]] = []
        self.pairs_sent = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        parser = FrameParser(16 * 1024 * 1024)
        gone = asyncio.Event()

        async def read_until_gone() -> None:
            try:
                while data := await asyncio.wait_for(reader.read(65536), 10):
                    parser.feed(data)
                    while (frame := parser.next_frame()) is not None:
                        if frame.type == FrameType.GOAWAY:
                            _, code, reason = parse_goaway(bytes(frame.payload))
                            self.goaways.append((code, reason))
            except (ConnectionError, TimeoutError, ssl.SSLError):
                pass
            finally:
                gone.set()

        reading = asyncio.create_task(read_until_gone())
        try:
            await asyncio.sleep(0.1)  # the agent's HELLO is read (and ignored) by the reader
            writer.write(encode_hello(ProtocolConfig().settings(), b""))
            # let the agent take the HELLO on its own (admitted), then flood: a HELLO that
            # arrives together with the flood fails the session at once (tested in the core)
            await asyncio.sleep(1.0)
            batch = 500 if self.mode == "pairs" else 16
            for start in range(0, PAIRS, batch):
                if gone.is_set():
                    break
                sids = range(1 + 2 * start, 1 + 2 * (start + batch), 2)
                if self.mode == "pairs":
                    writer.write(b"".join(encode_open(sid, 0, b"") +
                                          encode_reset(sid, ErrorCode.CANCEL, "")
                                          for sid in sids))
                else:
                    writer.write(b"".join(encode_open(sid, 0, b"") for sid in sids))
                    await writer.drain()
                    await asyncio.sleep(0.01)
                    writer.write(b"".join(encode_reset(sid, ErrorCode.CANCEL, "")
                                          for sid in sids))
                self.pairs_sent += batch
                await writer.drain()
            await gone.wait()
        except (ConnectionError, ssl.SSLError):
            await gone.wait()
        finally:
            reading.cancel()
            writer.close()


@pytest.mark.parametrize("mode", ["pairs", "split"])
async def test_an_open_reset_flood_gets_enhance_your_calm_and_few_device_dials(
        tmp_path: Path, mode: str) -> None:
    now = dt.datetime.now(dt.UTC)
    ca = pki.create_ca(now=now)
    relay_cert = ca.issue_server_cert(ip_addresses=["127.0.0.1"], dns_names=["localhost"],
                                      now=now)
    inst = ca.issue_installation_cert("inst-flood", now=now)
    for name, data in {"ca.crt": ca.cert_pem, "relay.crt": pki.cert_to_pem(relay_cert.cert),
                       "relay.key": pki.key_to_pem(relay_cert.key),
                       "agent.crt": pki.cert_to_pem(inst.cert),
                       "agent.key": pki.key_to_pem(inst.key)}.items():
        write_pem(tmp_path / name, data)

    dials = 0

    async def device(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal dials
        dials += 1
        writer.close()

    device_server = await asyncio.start_server(device, "127.0.0.1", 0)
    relay = HostileRelay(mode)
    relay_server = await asyncio.start_server(
        relay.handle, "127.0.0.1", 0,
        ssl=relay_tunnel_context(tmp_path / "relay.crt", tmp_path / "relay.key",
                                 tmp_path / "ca.crt"))
    config = {"tmp": str(tmp_path), "within": 30,
              "relay_port": relay_server.sockets[0].getsockname()[1],
              "device_port": device_server.sockets[0].getsockname()[1]}
    (tmp_path / "flood.json").write_text(json.dumps(config))
    agent = await asyncio.create_subprocess_exec(
        sys.executable, str(AGENT), str(tmp_path / "flood.json"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    started = asyncio.get_running_loop().time()
    try:
        out, err = await asyncio.wait_for(agent.communicate(), 60)
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()
        relay_server.close()
        device_server.close()
    elapsed = asyncio.get_running_loop().time() - started
    assert agent.returncode == 0, err.decode()[-3000:]
    result = json.loads(out.decode().strip().splitlines()[-1])

    # every tunnel connection the agent made ended in its GOAWAY ENHANCE_YOUR_CALM
    assert len(relay.goaways) == relay.connections, "a connection ended without GOAWAY"
    assert {code for code, _ in relay.goaways} == {ErrorCode.ENHANCE_YOUR_CALM}
    assert all("early_resets" in reason for _, reason in relay.goaways)
    # ... reconnected until it had seen enough, then cut the relay for the session
    assert relay.connections == 3 == result["generations"]
    assert result["state"] == "failed" and "kept breaking" in result["reason"]
    kinds = {(r["kind"], r["budget"]) for r in result["reports"]}
    assert ("protocol_violation", "early_resets") in kinds
    assert any(r["kind"] == "relay_cut" for r in result["reports"])
    # and the printer saw a handful of connections, not one per pair
    print(f"flood ({mode}): {relay.connections} tunnel connections, {relay.pairs_sent} "
          f"OPEN+RESET pairs written, {dials} device dials, {len(relay.goaways)} GOAWAY "
          "ENHANCE_YOUR_CALM")
    # pairs in one read never dial; split pairs dial at most the early_resets budget plus
    # the 32 device slots per tunnel connection, plus what the budget refilled meanwhile
    budget = ProtocolConfig().early_resets
    bound = 32 if mode == "pairs" else (relay.connections * (budget.burst + 32)
                                        + int(budget.per_second * elapsed))
    assert dials <= bound, dials
