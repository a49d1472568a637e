"""Command latency between portal replicas: same replica vs across replicas through NATS, and
the transports side by side (NATS request/reply vs PostgreSQL LISTEN/NOTIFY).

Two real control servers (grpcio, mTLS on 127.0.0.1) share one PostgreSQL schema; each has
its own :class:`~ewsgate.portal.control.routing.NatsRouter` on a real ``nats-server`` (started
by this script on a free loopback port). One real agent (:class:`ControlClient`) holds its
stream on replica B. Measured, one at a time, ``--pings`` each (default 300):

* ``Ping, same replica``: ``send_command`` on B (portal → agent → result, with its database
  writes);
* ``Ping, across replicas``: ``send_command`` on A, forwarded to B through NATS;
* ``offline answer``: ``send_command`` on A for an installation nobody holds (NATS "no
  responders");
* ``NATS request/reply``: the bare transport, a 100-byte request answered by a subscriber;
* ``LISTEN/NOTIFY round trip``: the same exchange through PostgreSQL (``NOTIFY`` on one
  connection, a listener on another answers with a ``NOTIFY`` back).

The portal replicas run in one process here (one event loop), so "across" includes the NATS
hops and the message encoding but not a second process's scheduling. Bounded: every loop has a
count and every wait a timeout; the nats-server and the schema are removed at the end.

Run::

    .venv/bin/python bench/cluster_bench.py [--pings 300]
        [--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from control.nats_server import running_nats  # noqa: E402
from ewsgate import pki  # noqa: E402
from ewsgate.agent.commands import default_handlers  # noqa: E402
from ewsgate.agent.control_client import ClientConfig, ControlClient  # noqa: E402
from ewsgate.agent.enroll import EnrolOptions, enroll  # noqa: E402
from ewsgate.agent.state import AgentState  # noqa: E402
from ewsgate.config import HostPort  # noqa: E402
from ewsgate.portal.control import (  # noqa: E402
    ControlServer,
    ControlServerConfig,
    InstallationOffline,
)
from ewsgate.portal.control.routing import NatsRouter  # noqa: E402
from ewsgate.portal.services.installations import hash_token  # noqa: E402
from ewsgate.portal.store.db import Database, parse_database_url  # noqa: E402
from ewsgate.portal.store.models import (  # noqa: E402
    Customer,
    Dealer,
    EnrolmentToken,
    Installation,
)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _plain(url: str) -> str:
    parsed, _ = parse_database_url(url)
    return parsed.set(drivername="postgresql", query={}).render_as_string(hide_password=False)


async def _measure(count: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    for _ in range(min(20, count)):  # warm up
        await call()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def _row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"| {name:<34} | {statistics.median(ordered):8.2f} | {p99:8.2f} | "
            f"{len(ordered):5d} |")


async def _installation(db: Database, ca: pki.CertificateAuthority) -> tuple[int, str]:
    async with db.transaction() as session:
        dealer = Dealer(name="Dealer", created_at=now())
        session.add(dealer)
        await session.flush()
        customer = Customer(dealer_id=dealer.id, parent_id=None, name="C", created_at=now())
        session.add(customer)
        await session.flush()
        installation = Installation(customer_id=customer.id, name="Site", enabled=True,
                                    online=False, created_at=now())
        session.add(installation)
        await session.flush()
        secret = "ewse_" + uuid.uuid4().hex + uuid.uuid4().hex
        session.add(EnrolmentToken(installation_id=installation.id,
                                   token_hash=hash_token(secret), created_at=now(),
                                   expires_at=now() + dt.timedelta(hours=1)))
        return installation.id, pki.compose_enrolment_token(secret, ca.cert)


async def _listen_notify(base_url: str, count: int) -> list[float]:
    import asyncpg

    server = await asyncpg.connect(_plain(base_url))
    client = await asyncpg.connect(_plain(base_url))
    channel = f"ewsgate_bench_{uuid.uuid4().hex[:8]}"
    replies: asyncio.Queue[str] = asyncio.Queue()

    pending: set[asyncio.Future[str]] = set()

    def on_request(connection: object, pid: int, name: str, payload: str) -> None:
        answer = asyncio.ensure_future(server.execute("SELECT pg_notify($1, $2)",
                                                      channel + "_r", payload))
        pending.add(answer)
        answer.add_done_callback(pending.discard)

    def on_reply(connection: object, pid: int, name: str, payload: str) -> None:
        replies.put_nowait(payload)

    await server.add_listener(channel, on_request)
    await client.add_listener(channel + "_r", on_reply)
    body = "x" * 100

    async def one() -> None:
        await client.execute("SELECT pg_notify($1, $2)", channel, body)
        await asyncio.wait_for(replies.get(), 10)

    try:
        return await _measure(count, one)
    finally:
        await server.close()
        await client.close()


async def _nats_bare(url: str, count: int) -> list[float]:
    import nats

    responder = await nats.connect(url)
    requester = await nats.connect(url)

    async def answer(message: object) -> None:
        await message.respond(b"y" * 100)  # type: ignore[attr-defined]

    await responder.subscribe("bench.echo", cb=answer)
    await responder.flush()
    try:
        return await _measure(count, lambda: requester.request("bench.echo", b"x" * 100,
                                                               timeout=10))
    finally:
        await responder.close()
        await requester.close()


async def _stop(routers: list[NatsRouter], servers: list[ControlServer]) -> None:
    while routers:
        await routers.pop().stop()
    while servers:
        await servers.pop().stop(0.2)


async def run(base_url: str, pings: int) -> None:
    import asyncpg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_plain(base_url))
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    parsed, _ = parse_database_url(base_url)
    url = parsed.update_query_dict({"schema": schema}).render_as_string(hide_password=False)
    db = Database(url)
    servers: list[ControlServer] = []
    routers: list[NatsRouter] = []
    client: ControlClient | None = None
    task: asyncio.Task[None] | None = None
    try:
        await db.upgrade()
        ca = pki.create_ca(now=now())
        with running_nats() as nats_url, tempfile.TemporaryDirectory() as tmp:
            for name in ("a", "b"):
                server = ControlServer(ControlServerConfig(listen="127.0.0.1:0",
                                                           enrol_listen="127.0.0.1:0"),
                                       database=db, ca=ca, clock=now)
                await server.start()
                servers.append(server)
                router = NatsRouter(lambda s=server: s.hub, nats_url, replica=name)
                await router.start()
                routers.append(router)
            a, b = routers
            installation_id, token = await _installation(db, ca)
            state = AgentState(Path(tmp) / "agent")
            await enroll(EnrolOptions(portal=HostPort("127.0.0.1", servers[1].enrol_port or 0),
                                      token=token, agent_version="bench"), state)
            client = ControlClient(state, default_handlers(None),
                                   ClientConfig(agent_version="bench"), clock=now)
            task = asyncio.create_task(client.run())
            await asyncio.wait_for(client.connected.wait(), 30)
            deadline = time.monotonic() + 10
            while not b.holds_subscription(installation_id):
                if time.monotonic() > deadline:
                    raise RuntimeError("replica B never subscribed for its installation")
                await asyncio.sleep(0.05)
            nobody, _ = await _installation(db, ca)

            async def offline() -> None:
                try:
                    await a.send_command(nobody, "Ping", {}, timeout=30)
                except InstallationOffline:
                    return
                raise RuntimeError("a command for nobody's installation was answered")

            rows = [
                _row("Ping, same replica", await _measure(pings, lambda: b.send_command(
                    installation_id, "Ping", {}, timeout=10))),
                _row("Ping, across replicas (NATS)", await _measure(pings, lambda: a.send_command(
                    installation_id, "Ping", {}, timeout=10))),
                _row("offline answer (no responders)", await _measure(pings, offline)),
                _row("NATS request/reply, bare", await _nats_bare(nats_url, pings)),
                _row("PostgreSQL LISTEN/NOTIFY round trip", await _listen_notify(base_url,
                                                                                 pings)),
            ]
            client.stop()
            await asyncio.wait_for(task, 15)
            client = task = None
            await _stop(routers, servers)  # while nats-server still runs
    finally:
        if client is not None and task is not None:
            client.stop()
            await asyncio.wait_for(task, 15)
        await _stop(routers, servers)
        await db.dispose()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()
    print("| path                               | p50 (ms) | p99 (ms) |     n |")
    print("| ---------------------------------- | -------: | -------: | ----: |")
    for row in rows:
        print(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pings", type=int, default=300)
    parser.add_argument("--database-url",
                        default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    if not 1 <= args.pings <= 100_000:
        parser.error("--pings must be 1..100000")
    asyncio.run(run(args.database_url, args.pings))


if __name__ == "__main__":
    main()
