"""Idle installations: N control streams (real mTLS, real grpcio) on one portal process.

For each N the portal's control server runs in a child process (this script with ``--serve``)
on a SQLite database that already holds N enrolled installations; N real
:class:`ewsgate.agent.control_client.ControlClient` instances (each with its own key,
certificate, data directory and TLS connection) run in ``--agent-procs`` other child processes
(this script with ``--agents``; one event loop each, started afresh for every N so that their
memory is measured from a clean start). Reported per N:

* ``connect all``: from telling the agent processes to start their clients until every client
  has its Welcome. By default all clients start at once, like a fleet after a portal restart;
  ``--at-once K`` starts the next client only while fewer than K are waiting for their Welcome
  (a fleet arriving at the rate the portal takes it);
* ``retries``: connection attempts that failed on the way (each one a new TLS handshake; the
  reasons are in the JSON line of each step on stderr, with the peak open files of each
  process);
* ``portal CPU`` and ``agents CPU``: CPU seconds spent while connecting, by the portal process
  and by all agent processes together (both share the machine's cores);
* ``portal RSS/stream``: (portal RSS with N streams - portal RSS before any) / N;
* ``agents RSS/stream``: the same summed over the agent processes;
* ``RTT p50/p99``: ``Ping`` command round trips portal → agent → result (``send_command``,
  including its database writes), one at a time to random installations, while all N are
  connected.

**Preparation is not what is measured.** Enrolment (token, ``Enrolment.Enroll``) has its own
tests; here the N installations are made the short way, without faking anything the streams
use: the rows are inserted in one batch, each installation's P-256 key and CSR are made locally
and the CSR is signed by the portal CA's own ``sign_installation_csr`` (what enrolment calls),
the certificates' serials and expiries are recorded in one batch, and the data directories are
written in the agent's layout without an fsync per file (it is a temporary directory). Each
client loads and checks its directory with ``AgentState.load`` when it starts, and the portal
checks each certificate against the database as usual. 10,000 installations take about 30 s to
prepare this way; row by row (a flush per row, four fsynced files per directory) 5000 took
200 s.

Heartbeats are set to 30 s for this run (idle installations; the default is 2.5 s, which costs
N/2.5 small messages per second); the clients wait up to 60 s for Welcome (the agent's default
is 10 s). Bounded: every step has a connect timeout and stops the escalation when it is not
met; every child process is stopped. Both the portal and the agent processes raise their
open-files limit to the hard limit (each stream is a socket at both ends).

Open files are the hard ceiling: each stream is one socket in the portal and one in an agent
process, a process cannot raise its hard limit without privilege (20,000 on the development
machine), and during a retry storm abandoned handshakes still hold sockets at both ends, so
10,000 streams started at once can run both sides out of them. ``--agent-procs 2`` halves the
agents' share.

Run (under ``nice`` when the machine is shared)::

    .venv/bin/python bench/control_bench.py [--sizes 100,1000,3000] [--pings 300]
        [--connect-timeout 180] [--agent-procs 1] [--at-once 0]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import json
import logging
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
# grpc's core logs every GOAWAY of thousands of streams at INFO when a step ends
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard one (each stream is a socket); the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _reply(payload: Any) -> None:
    print(json.dumps(payload), flush=True)


async def _lines() -> AsyncIterator[list[str]]:
    """The commands this child gets on stdin, one line at a time, until EOF."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        yield line.split()


# ----------------------------------------------------------------------------- portal child

async def _serve(url: str, data_dir: str, port: int) -> None:
    from ewsgate.portal.control import ControlServer, ControlServerConfig, HubConfig
    from ewsgate.portal.control.runtime import load_portal_ca
    from ewsgate.portal.store.db import Database
    from ewsgate.portal.store.types import utc_now

    logging.basicConfig(level=logging.WARNING)
    _raise_fd_limit()
    database = Database(url)
    hub = HubConfig(heartbeat_interval=30.0, sweep_interval=1.0, db_sweep_interval=10.0,
                    stale_after=90.0)
    server = ControlServer(ControlServerConfig(listen=f"127.0.0.1:{port}", enrol_listen=None,
                                               hub=hub),
                           database=database, ca=load_portal_ca(Path(data_dir)), clock=utc_now)
    await server.start()
    print("ready", flush=True)
    async for words in _lines():
        if words[0] == "online":
            _reply({"online": len(server.hub.online_ids())})
        elif words[0] == "rtt":
            ids = sorted(server.hub.online_ids())
            samples = []
            for _ in range(int(words[1])):
                started = time.perf_counter()
                await server.hub.send_command(random.choice(ids), "Ping", {}, timeout=30)
                samples.append((time.perf_counter() - started) * 1000)
            _reply({"samples": samples})
    await server.stop(1.0)


# ----------------------------------------------------------------------------- agents child

class _ReasonCounter(logging.Handler):
    """Counts the client's "control stream down (REASON); reconnecting" warnings by reason."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            print(record.getMessage(), file=sys.stderr)
        elif record.msg.startswith("control stream down") and record.args:
            self.counts[str(record.args[0])[:100]] += 1


async def _agents(list_file: str) -> None:
    """Run one ControlClient per data directory named in ``list_file``; driven over stdin."""
    from ewsgate.agent.commands import default_handlers
    from ewsgate.agent.control_client import ClientConfig, ControlClient
    from ewsgate.agent.state import AgentState

    # failed attempts are counted by reason, not logged one line each
    logging.basicConfig(level=logging.ERROR)
    reasons = _ReasonCounter()
    client_log = logging.getLogger("ewsgate.agent.control_client")
    client_log.setLevel(logging.WARNING)
    client_log.propagate = False
    client_log.addHandler(reasons)
    _raise_fd_limit()
    states = [AgentState(Path(line)) for line in Path(list_file).read_text().split()]
    config = ClientConfig(agent_version="bench", backoff_base=1.0, backoff_cap=30.0,
                          connect_timeout=60.0, renew_check_interval=3600)
    handlers = default_handlers()
    clients: list[ControlClient] = []
    tasks: list[asyncio.Task[None]] = []
    starter: asyncio.Task[None] | None = None
    print("ready", flush=True)
    async for words in _lines():
        if words[0] != "start" or clients:
            break
        cpu_base, started = time.process_time(), time.perf_counter()
        deadline = started + float(words[1])
        clients = [ControlClient(state, handlers, config) for state in states]
        if int(words[2]) > 0:  # at most this many connecting at once, the next when one is up
            starter = asyncio.create_task(_start_gradually(clients, int(words[2]), tasks))
        else:
            tasks.extend(asyncio.create_task(client.run()) for client in clients)
        peak_fds, next_fd_count = 0, 0.0
        while time.perf_counter() < deadline:
            if all(client.connected.is_set() for client in clients):
                break
            if time.perf_counter() >= next_fd_count:
                with contextlib.suppress(OSError):  # EMFILE: at the limit
                    peak_fds = max(peak_fds, len(os.listdir("/proc/self/fd")))
                next_fd_count = time.perf_counter() + 1.0
            await asyncio.sleep(0.05)
        _reply({"connected": sum(client.connected.is_set() for client in clients),
                "retries": sum(client.backoff.attempt for client in clients),
                "connect_s": time.perf_counter() - started,
                "cpu_s": time.process_time() - cpu_base, "peak_fds": peak_fds,
                "reasons": reasons.counts.most_common(5)})
    if starter is not None:
        starter.cancel()
        await asyncio.gather(starter, return_exceptions=True)
    for client in clients:
        client.stop()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 120)


async def _start_gradually(clients: list[Any], at_once: int,
                           tasks: list[asyncio.Task[None]]) -> None:
    """Start the clients so that at most ``at_once`` are waiting for their Welcome."""
    slots = asyncio.Semaphore(at_once)

    async def until_up(client: Any) -> None:
        await client.connected.wait()
        slots.release()

    waiters = []
    for client in clients:
        await slots.acquire()
        tasks.append(asyncio.create_task(client.run()))
        waiters.append(asyncio.create_task(until_up(client)))
    await asyncio.gather(*waiters)


# ----------------------------------------------------------------------------- preparation

async def _prepare(root: Path, count: int) -> tuple[str, list[Path]]:
    """A migrated database with ``count`` enrolled installations; their data directories.

    The short way (see the module docstring): one batch insert, the real CA signing each
    locally made CSR, one batch update of serials and expiries, data directories written in
    :mod:`ewsgate.agent.state`'s layout (``installation.json`` by :func:`_point_at`).
    """
    from sqlalchemy import insert, update

    from ewsgate import pki
    from ewsgate.agent.state import AgentState
    from ewsgate.portal.control.runtime import load_portal_ca
    from ewsgate.portal.store.db import Database
    from ewsgate.portal.store.models import Customer, Dealer, Installation

    url = f"sqlite+aiosqlite:///{root / 'portal.sqlite3'}"
    database = Database(url)
    await database.upgrade()
    ca = load_portal_ca(root / "portal")
    now = dt.datetime.now(dt.UTC)
    async with database.transaction() as session:
        dealer = Dealer(name="bench", created_at=now)
        session.add(dealer)
        await session.flush()
        customer = Customer(dealer_id=dealer.id, parent_id=None, name="bench", created_at=now)
        session.add(customer)
        await session.flush()
        result = await session.execute(
            insert(Installation).returning(Installation.id, sort_by_parameter_order=True),
            [{"customer_id": customer.id, "name": f"site {index}", "enabled": True,
              "online": False, "created_at": now} for index in range(count)])
        ids = [int(row.id) for row in result]
    dirs, records = [], []
    ca_pem = ca.cert_pem
    for installation_id in ids:
        key = pki.generate_key()
        cert = ca.sign_installation_csr(pki.build_csr(key), installation_id=installation_id,
                                        now=now)
        records.append({"id": installation_id, "cert_serial": pki.serial_hex(cert),
                        "cert_not_after": cert.not_valid_after_utc})
        state = AgentState(root / "agents" / str(installation_id))
        state.data_dir.mkdir(mode=0o700, parents=True)
        _write_file(state.key_path, pki.key_to_pem(key), 0o600)
        _write_file(state.cert_path, pki.cert_to_pem(cert))
        _write_file(state.ca_path, ca_pem)
        dirs.append(state.data_dir)
    async with database.transaction() as session:
        await session.execute(update(Installation), records)
    await database.dispose()
    return url, dirs


def _write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _point_at(dirs: list[Path], port: int) -> None:
    """Write each data directory's ``installation.json`` naming this step's portal port."""
    from ewsgate import pki
    from ewsgate.agent.state import AgentState

    enrolled_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    for data_dir in dirs:
        info_path = AgentState(data_dir).info_path
        info = {"installation_id": data_dir.name, "control_address": f"127.0.0.1:{port}",
                "server_name": pki.PORTAL_SERVER_NAME, "enrolled_at": enrolled_at}
        tmp = info_path.with_name(info_path.name + ".tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, info_path)


# ----------------------------------------------------------------------------- the driver

def _rss(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


def _cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _fds(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).num_fds())


class _Child:
    """A child process of this script, driven by lines on stdin, answering JSON lines."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, str(HERE), *args],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _readline(self, timeout: float) -> bytes:
        assert self.process.stdout is not None
        return await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), timeout)

    async def ready(self, timeout: float) -> None:
        line = await self._readline(timeout)
        assert line.strip() == b"ready", line

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    async def answer(self, timeout: float) -> Any:
        line = await self._readline(timeout)
        if not line:
            raise RuntimeError(f"child {self.pid} exited with {self.process.wait(10)}")
        return json.loads(line)

    async def ask(self, line: str, timeout: float) -> Any:
        self.send(line)
        return await self.answer(timeout)

    async def close(self, timeout: float) -> None:
        """Close stdin (the child stops what it runs and exits); kill it if it does not."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
        try:
            await asyncio.to_thread(self.process.wait, timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait, 10)


async def _step(root: Path, url: str, dirs: list[Path], pings: int, connect_timeout: float,
                procs: int, at_once: int) -> dict[str, Any]:
    port = _free_port()
    _point_at(dirs, port)
    portal = _Child("--serve", url, str(root / "portal"), str(port))
    agents: list[_Child] = []
    try:
        await portal.ready(60)
        for index in range(procs):
            list_file = root / f"agents-{index}.txt"
            list_file.write_text("\n".join(str(d) for d in dirs[index::procs]) + "\n")
            agents.append(_Child("--agents", str(list_file)))
        for agent in agents:
            await agent.ready(60)
        await asyncio.sleep(0.5)
        portal_base = _rss(portal.pid)
        agents_base = sum(_rss(agent.pid) for agent in agents)
        cpu_base = _cpu(portal.pid)
        started = time.perf_counter()
        for agent in agents:
            agent.send(f"start {connect_timeout} {max(0, at_once // procs)}")
        answers = asyncio.gather(*(agent.answer(connect_timeout + 120) for agent in agents))
        portal_fds = 0
        while not answers.done():
            portal_fds = max(portal_fds, _fds(portal.pid))
            await asyncio.wait([answers], timeout=1.0)
        reports = answers.result()
        connect_s = time.perf_counter() - started
        cpu = _cpu(portal.pid) - cpu_base
        connected = sum(report["connected"] for report in reports)
        await asyncio.sleep(1.0)
        online = (await portal.ask("online", 30))["online"]
        portal_rss = _rss(portal.pid)
        agents_rss = sum(_rss(agent.pid) for agent in agents)
        samples = (await portal.ask(f"rtt {pings}", 300))["samples"] if connected else []
        quantiles = statistics.quantiles(samples, n=100) if len(samples) >= 2 else [0.0] * 99
        count = max(1, len(dirs))
        return {"n": len(dirs), "connected": connected, "portal_online": online,
                "connect_s": connect_s, "retries": sum(report["retries"] for report in reports),
                "portal_cpu_s": cpu, "agents_cpu_s": sum(report["cpu_s"] for report in reports),
                "portal_rss_per_stream_kib": (portal_rss - portal_base) / count / 1024,
                "agents_rss_per_stream_kib": (agents_rss - agents_base) / count / 1024,
                "portal_rss_mib": portal_rss / 2**20,
                "rtt_p50_ms": quantiles[49], "rtt_p99_ms": quantiles[98],
                "pings": len(samples), "agent_procs": procs, "at_once": at_once,
                "portal_peak_fds": portal_fds,
                "agents_peak_fds": [report["peak_fds"] for report in reports],
                "retry_reasons": [report["reasons"] for report in reports]}
    finally:
        await asyncio.gather(*(agent.close(150) for agent in agents))
        await portal.close(30)


async def _bench(sizes: list[int], pings: int, connect_timeout: float, procs: int,
                 at_once: int) -> list[dict[str, Any]]:
    limit = _raise_fd_limit()
    if limit < max(sizes) + 1000:
        print(f"open-files limit {limit} is too low for {max(sizes)} streams", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ewsgate-control-bench-") as tmp:
        root = Path(tmp)
        prepare_started = time.perf_counter()
        url, dirs = await _prepare(root, max(sizes))
        print(f"prepared {len(dirs)} installations in "
              f"{time.perf_counter() - prepare_started:.1f} s", file=sys.stderr)
        for size in sizes:
            row = await _step(root, url, dirs[:size], pings, connect_timeout, procs, at_once)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
            if row["connected"] < size:
                print(f"stopping: only {row['connected']} of {size} connected within "
                      f"{connect_timeout:g} s", file=sys.stderr)
                break
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("| streams | connected | connect all (s) | retries | portal CPU (s) | agents CPU (s) "
            "| portal RSS/stream (KiB) | agents RSS/stream (KiB) | portal RSS (MiB) "
            "| RTT p50 (ms) | RTT p99 (ms) |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['n']} | {r['connected']} | {r['connect_s']:.1f} | {r['retries']} | "
                     f"{r['portal_cpu_s']:.1f} | {r['agents_cpu_s']:.1f} | "
                     f"{r['portal_rss_per_stream_kib']:.1f} | "
                     f"{r['agents_rss_per_stream_kib']:.1f} | {r['portal_rss_mib']:.0f} | "
                     f"{r['rtt_p50_ms']:.2f} | {r['rtt_p99_ms']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,3000",
                        help="comma-separated stream counts (each at most 10000)")
    parser.add_argument("--pings", type=int, default=300, help="Ping round trips per size")
    parser.add_argument("--connect-timeout", type=float, default=180.0)
    parser.add_argument("--agent-procs", type=int, default=1,
                        help="processes the clients are spread over (one event loop each)")
    parser.add_argument("--at-once", type=int, default=0,
                        help="at most this many clients connecting at a time (0: all at once)")
    parser.add_argument("--serve", nargs=3, metavar=("URL", "DATA_DIR", "PORT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--agents", metavar="LIST_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve[0], args.serve[1], int(args.serve[2])))
        return
    if args.agents:
        asyncio.run(_agents(args.agents))
        return
    sizes = sorted({min(10_000, int(size)) for size in args.sizes.split(",") if size.strip()})
    rows = asyncio.run(_bench(sizes, min(args.pings, 5000), args.connect_timeout,
                              max(1, args.agent_procs), max(0, args.at_once)))
    print(_table(rows))


if __name__ == "__main__":
    main()
