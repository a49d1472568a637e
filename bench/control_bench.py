"""Idle installations: N control streams (real mTLS, real grpcio) on one portal process.

For each N the portal's control server runs in a child process (this script with ``--serve``)
on a SQLite database that already holds N enrolled installations; this process runs N real
:class:`ewsgate.agent.control_client.ControlClient` instances (each with its own key,
certificate, data directory and TLS connection) on one event loop. Reported per N:

* ``connect all``: from starting the N clients until every one has its Welcome;
* ``portal RSS/stream``: (portal RSS with N streams - portal RSS before any) / N;
* ``agents RSS/stream``: the same for this process (N in-process clients);
* ``RTT p50/p99``: ``Ping`` command round trips portal → agent → result (``send_command``,
  including its database writes), one at a time to random installations, while all N are
  connected;
* ``portal CPU``: the portal's CPU seconds spent while connecting.

Heartbeats are set to 30 s for this run (idle installations; the default is 2.5 s, which costs
N/2.5 small messages per second). Bounded: every step has a connect timeout and stops the
escalation when it is not met; every child process is stopped.

Run: ``.venv/bin/python bench/control_bench.py [--sizes 100,1000,3000] [--pings 300]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----------------------------------------------------------------------------- portal child

async def _serve(url: str, data_dir: str, port: int) -> None:
    import logging

    from ewsgate.portal.control import ControlServer, ControlServerConfig, HubConfig
    from ewsgate.portal.control.runtime import load_portal_ca
    from ewsgate.portal.store.db import Database
    from ewsgate.portal.store.types import utc_now

    logging.basicConfig(level=logging.WARNING)
    database = Database(url)
    hub = HubConfig(heartbeat_interval=30.0, sweep_interval=1.0, db_sweep_interval=10.0,
                    stale_after=90.0)
    server = ControlServer(ControlServerConfig(listen=f"127.0.0.1:{port}", enrol_listen=None,
                                               hub=hub),
                           database=database, ca=load_portal_ca(Path(data_dir)), clock=utc_now)
    await server.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        words = line.split()
        if words[0] == "online":
            print(json.dumps({"online": len(server.hub.online_ids())}), flush=True)
        elif words[0] == "rtt":
            count = int(words[1])
            ids = sorted(server.hub.online_ids())
            samples = []
            for _ in range(count):
                started = time.perf_counter()
                await server.hub.send_command(random.choice(ids), "Ping", {}, timeout=30)
                samples.append((time.perf_counter() - started) * 1000)
            print(json.dumps({"samples": samples}), flush=True)
    await server.stop(1.0)


# ----------------------------------------------------------------------------- agents side

async def _prepare(root: Path, count: int) -> tuple[str, list[Any]]:
    """A migrated database with ``count`` installations, each with an enrolled data dir."""
    from ewsgate import pki
    from ewsgate.agent.state import AgentIdentity, AgentState
    from ewsgate.config import HostPort
    from ewsgate.portal.control.runtime import load_portal_ca
    from ewsgate.portal.store.db import Database
    from ewsgate.portal.store.models import Customer, Dealer, Installation

    url = f"sqlite+aiosqlite:///{root / 'portal.sqlite3'}"
    database = Database(url)
    await database.upgrade()
    ca = load_portal_ca(root / "portal")
    now = dt.datetime.now(dt.UTC)
    states = []
    async with database.transaction() as session:
        dealer = Dealer(name="bench", created_at=now)
        session.add(dealer)
        await session.flush()
        customer = Customer(dealer_id=dealer.id, parent_id=None, name="bench", created_at=now)
        session.add(customer)
        await session.flush()
        for index in range(count):
            row = Installation(customer_id=customer.id, name=f"site {index}", enabled=True,
                               online=False, created_at=now)
            session.add(row)
            await session.flush()
            issued = ca.issue_installation_cert(row.id, now=now)
            row.cert_serial = pki.serial_hex(issued.cert)
            row.cert_not_after = issued.cert.not_valid_after_utc
            state = AgentState(root / "agents" / str(row.id))
            state.save_enrolment(AgentIdentity(
                installation_id=str(row.id), key_pem=issued.key_pem, cert_pem=issued.cert_pem,
                ca_pem=ca.cert_pem, control_address=HostPort("127.0.0.1", 0),
                server_name=pki.PORTAL_SERVER_NAME))
            states.append(state)
    await database.dispose()
    return url, states


def _rss(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


def _cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def _ask(portal: subprocess.Popen[bytes], line: str, timeout: float) -> Any:
    assert portal.stdin is not None and portal.stdout is not None
    portal.stdin.write(line.encode() + b"\n")
    portal.stdin.flush()
    answer = await asyncio.wait_for(asyncio.to_thread(portal.stdout.readline), timeout)
    return json.loads(answer)


def _point_at(states: list[Any], port: int) -> None:
    for state in states:
        info = json.loads(state.info_path.read_text())
        info["control_address"] = f"127.0.0.1:{port}"
        state.info_path.write_text(json.dumps(info))


async def _step(root: Path, url: str, states: list[Any], pings: int,
                connect_timeout: float) -> dict[str, Any]:
    from ewsgate.agent.commands import default_handlers
    from ewsgate.agent.control_client import ClientConfig, ControlClient

    port = _free_port()
    _point_at(states, port)
    portal = subprocess.Popen([sys.executable, str(HERE), "--serve", url, str(root / "portal"),
                               str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    clients: list[ControlClient] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        assert portal.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(portal.stdout.readline), 60)
        assert line.strip() == b"ready", line
        await asyncio.sleep(0.5)
        portal_base, self_base = _rss(portal.pid), _rss(os.getpid())
        cpu_base = _cpu(portal.pid)
        config = ClientConfig(agent_version="bench", backoff_base=1.0, backoff_cap=30.0,
                              connect_timeout=60.0, renew_check_interval=3600)
        handlers = default_handlers()
        started = time.perf_counter()
        for state in states:
            client = ControlClient(state, handlers, config)
            clients.append(client)
            tasks.append(asyncio.create_task(client.run()))
        deadline = started + connect_timeout
        while time.perf_counter() < deadline:
            if all(client.connected.is_set() for client in clients):
                break
            await asyncio.sleep(0.05)
        connected = sum(client.connected.is_set() for client in clients)
        connect_s = time.perf_counter() - started
        await asyncio.sleep(1.0)
        online = (await _ask(portal, "online", 30))["online"]
        portal_rss, self_rss = _rss(portal.pid), _rss(os.getpid())
        cpu = _cpu(portal.pid) - cpu_base
        samples = (await _ask(portal, f"rtt {pings}", 300))["samples"] if connected else []
        quantiles = statistics.quantiles(samples, n=100) if len(samples) >= 2 else [0.0] * 99
        count = max(1, len(states))
        return {"n": len(states), "connected": connected, "portal_online": online,
                "connect_s": connect_s, "portal_cpu_s": cpu,
                "portal_rss_per_stream_kib": (portal_rss - portal_base) / count / 1024,
                "agents_rss_per_stream_kib": (self_rss - self_base) / count / 1024,
                "portal_rss_mib": portal_rss / 2**20,
                "rtt_p50_ms": quantiles[49], "rtt_p99_ms": quantiles[98],
                "pings": len(samples)}
    finally:
        for client in clients:
            client.stop()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 120)
        if portal.stdin is not None:
            portal.stdin.close()
        try:
            portal.wait(20)
        except subprocess.TimeoutExpired:
            portal.kill()
            portal.wait(10)


async def _bench(sizes: list[int], pings: int, connect_timeout: float) -> list[dict[str, Any]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 65536)), hard))
    rows = []
    with tempfile.TemporaryDirectory(prefix="ewsgate-control-bench-") as tmp:
        root = Path(tmp)
        prepare_started = time.perf_counter()
        url, states = await _prepare(root, max(sizes))
        print(f"prepared {len(states)} installations in "
              f"{time.perf_counter() - prepare_started:.1f} s", file=sys.stderr)
        for size in sizes:
            row = await _step(root, url, states[:size], pings, connect_timeout)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
            if row["connected"] < size:
                print(f"stopping: only {row['connected']} of {size} connected within "
                      f"{connect_timeout:g} s", file=sys.stderr)
                break
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("| streams | connected | connect all (s) | portal CPU (s) | portal RSS/stream (KiB) "
            "| agents RSS/stream (KiB) | portal RSS (MiB) | RTT p50 (ms) | RTT p99 (ms) |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['n']} | {r['connected']} | {r['connect_s']:.1f} | "
                     f"{r['portal_cpu_s']:.1f} | {r['portal_rss_per_stream_kib']:.1f} | "
                     f"{r['agents_rss_per_stream_kib']:.1f} | {r['portal_rss_mib']:.0f} | "
                     f"{r['rtt_p50_ms']:.2f} | {r['rtt_p99_ms']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,3000",
                        help="comma-separated stream counts (each at most 10000)")
    parser.add_argument("--pings", type=int, default=300, help="Ping round trips per size")
    parser.add_argument("--connect-timeout", type=float, default=180.0)
    parser.add_argument("--serve", nargs=3, metavar=("URL", "DATA_DIR", "PORT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve[0], args.serve[1], int(args.serve[2])))
        return
    sizes = sorted({min(10_000, int(size)) for size in args.sizes.split(",") if size.strip()})
    rows = asyncio.run(_bench(sizes, min(args.pings, 5000), args.connect_timeout))
    print(_table(rows))


if __name__ == "__main__":
    main()
