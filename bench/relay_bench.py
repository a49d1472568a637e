"""The whole path, browser ⇄ relay ⇄ tunnel ⇄ agent ⇄ device: time to first page and throughput.

One run starts :class:`ewsgate.demo.DemoStack` (portal, relay, an enrolled agent and a simulated
``absolute`` printer, real processes on free loopback ports) and measures, side by side:

(a) **Time to first page**, over ``--sessions`` sessions opened one after another: from
    ``POST /api/v1/devices/{id}/remote-sessions`` to the first byte (response head) of the
    device's page through the session, as a browser gets it: the status polled every 20 ms,
    then the relay's OAuth redirects followed (relay → portal authorize → relay callback) and
    the page fetched. The phases come from the job's timeline (portal clock, same machine):
    *control* = created → the agent's first progress report; *identity* = → the agent reports
    the device verified; *tunnel* = → the agent reports the tunnel up; *ready seen* = → the
    client's poll saw ``ready``; *OAuth* = the three redirects; *first request* = → the page's
    response head (after the device's own redirect, if any). Each session is ended after.
(b) **Throughput** through the same path: the device record's web endpoint is pointed (PATCH,
    same SNMP identity) at a fast keep-alive origin (``/1k`` and ``/64k`` text/html pages, so
    the relay rewrites them; ``/stream/<n>`` downloads; ``POST /sink`` uploads), and a new
    session is opened on it. Side by side: through the relay (HTTPS to the session host with
    the session cookie: wrk and curl dial 127.0.0.1 and name the session host in ``Host``),
    direct HTTP to the origin, and OpenSSH's reverse tunnel (``ssh -N -R``, aes128-gcm, a local
    sshd on a free port with generated keys: the helpers of ``bench/tunnel_bench.py``). wrk
    with 32 keep-alive connections for the pages (and with one, for the 1 KiB page: a single
    request's latency), curl for bulk download and upload. Through the relay, the CPU time of
    the relay, agent and portal processes is measured for each run (per request, per MiB).

Run: ``.venv/bin/python bench/relay_bench.py [--quick] [--sessions 10] [--seconds 5]
[--bulk-mib 256] [--throughput-only] [--relay-only] [--py-spy DIR]``.
Bounded: at most 50 sessions, 60 s per wrk run, 2048 MiB bulk; every process is stopped (the
demo's context manager and the ssh helpers' ``stop_all``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpcore
import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from ewsgate.demo import DemoInfo, DemoStack  # noqa: E402
from tunnel_bench import Procs, start_ssh, wrk_figures, wrk_problem  # noqa: E402  (bench/ is not a package)

PROFILE = "absolute"
RELAY_COOKIE = "__Host-ewsgate_rt"
RELAY_LABEL = "through the relay (HTTPS, whole path)"


class _LocalhostBackend(httpcore.SyncBackend):
    """Resolves ``*.localhost`` to 127.0.0.1, as browsers do (RFC 6761)."""

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        if host == "localhost" or host.endswith(".localhost"):
            host = "127.0.0.1"
        return super().connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                   socket_options=socket_options)


def _client(info: DemoInfo) -> httpx.Client:
    transport = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=info.ca_file))
    transport._pool._network_backend = _LocalhostBackend()  # no public hook for a resolver
    return httpx.Client(transport=transport, timeout=30)


def _free_block(span: int = 20) -> int:
    """A block of ``span`` free loopback ports below the ephemeral range (32768+), where
    other programs' outgoing connections cannot take them while the demo starts."""
    import random

    for _ in range(200):
        base = random.randrange(20000, 32000)
        try:
            for port in range(base, base + span):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(socket.AF_INET, kind) as probe:
                        probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no block of free loopback ports")


# -- (a) time to first page ------------------------------------------------------------------

def _stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def one_session(info: DemoInfo, client: httpx.Client, csrf: str) -> dict[str, float]:
    """Open a session, fetch its first page, end it; the phases in ms."""
    device = info.device(PROFILE)
    headers = {"X-CSRF-Token": csrf, "Origin": info.portal_url}
    client.cookies.delete(RELAY_COOKIE)
    t0 = time.time()
    answer = client.post(f"{info.api_url}/devices/{device.id}/remote-sessions", json={},
                         headers=headers)
    if answer.status_code != 201:
        raise RuntimeError(f"POST remote-sessions: {answer.status_code} {answer.text[:300]}")
    session = answer.json()
    deadline = time.monotonic() + 30
    while session["status"] not in ("ready", "failed", "ended"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"session not ready in 30 s: {session}")
        time.sleep(0.02)
        session = client.get(f"{info.api_url}/remote-sessions/{session['session_id']}").json()
    seen_ready = time.time()
    if session["status"] != "ready":
        raise RuntimeError(f"session {session['status']}: {session.get('reason')}")
    heads: list[tuple[float, int, str]] = []
    hook = {"response": [lambda r: heads.append((time.time(), r.status_code, str(r.url)))]}
    client.event_hooks = hook
    try:
        page = client.get(session["url"], follow_redirects=True)
    finally:
        client.event_hooks = {"request": [], "response": []}
    if page.status_code != 200:
        raise RuntimeError(f"first page: {page.status_code} {page.text[:200]}")
    job = client.get(f"{info.api_url}/jobs/{session['job_id']}").json()
    timeline = {k: _stamp(v) for k, v in (job.get("result") or {}).get("timeline", {}).items()}
    client.delete(f"{info.api_url}/remote-sessions/{session['session_id']}", headers=headers)
    callback = next(t for t, _s, url in heads if "/.ewsgate/callback" in url)
    first_byte = heads[-1][0]
    created = timeline.get("created", t0)
    verifying = timeline.get("agent_verifying", created)
    connecting = timeline.get("agent_connecting", verifying)
    tunnel = timeline.get("agent_ready", timeline.get("ready", connecting))
    return {
        "POST → ready seen": (seen_ready - t0) * 1000,
        "control (portal → agent)": (verifying - created) * 1000,
        "identity check": (connecting - verifying) * 1000,
        "tunnel up": (tunnel - connecting) * 1000,
        "ready seen by the client": (seen_ready - tunnel) * 1000,
        "OAuth round trip": (callback - seen_ready) * 1000,
        "first request": (first_byte - callback) * 1000,
        "total: POST → first byte": (first_byte - t0) * 1000,
    }


def time_to_first_page(info: DemoInfo, count: int) -> dict[str, list[float]]:
    client = _client(info)
    try:
        login = info.logins["technician"]
        answer = client.post(f"{info.api_url}/auth/login",
                             json={"email": login["email"], "password": login["password"]})
        answer.raise_for_status()
        csrf = client.get(f"{info.api_url}/auth/me").json()["csrf_token"]
        runs: dict[str, list[float]] = {}
        for index in range(count):
            for name, value in one_session(info, client, csrf).items():
                runs.setdefault(name, []).append(value)
            print(f"  session {index + 1}/{count}: "
                  f"{runs['total: POST → first byte'][-1]:.0f} ms", file=sys.stderr)
        return runs
    finally:
        client.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- (b) throughput --------------------------------------------------------------------------

def _cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (``/proc/<pid>/stat``, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds the relay and the agent spend during one measurement (per request, per MB)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def snapshot(self) -> dict[str, float]:
        return {name: _cpu_seconds(pid) for name, pid in self.pids.items()}

    def since(self, before: dict[str, float]) -> dict[str, float]:
        now = self.snapshot()
        return {name: now[name] - before[name] for name in self.pids}


def _py_spy(pid: int, out: Path, seconds: int) -> subprocess.Popen[bytes] | None:
    """Sample ``pid`` with py-spy (if installed) into a collapsed-stack file."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        return None
    return subprocess.Popen([exe, "record", "-p", str(pid), "-d", str(seconds), "-r", "200",
                             "-f", "raw", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wrk(url: str, headers: list[str], seconds: int, conns: int = 32) -> dict[str, float]:
    cmd = ["wrk", "-t", str(min(2, conns)), "-c", str(conns), "-d", f"{seconds}s", "--latency"]
    for header in headers:
        cmd += ["-H", header]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60,
                         check=True).stdout
    if problem := wrk_problem(out):
        print(f"  wrk {url}: {problem}", file=sys.stderr)
    return wrk_figures(out)


def _curl(args: list[str], headers: list[str], metric: str) -> float:
    cmd = ["curl", "-sSk", "-o", os.devnull, "-w", f"%{{{metric}}}", "-H", "Expect:"]
    for header in headers:
        cmd += ["-H", header]
    out = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=600, check=True)
    return float(out.stdout) / 1e6


BODIES = {b"/1k": b"a" * 1024, b"/64k": b"b" * 65536, b"/": b"a" * 1024}
PATTERN = bytes(range(256)) * 1024


async def _origin(port_file: Path) -> None:
    """A fast keep-alive HTTP/1.1 device web server: /1k, /64k, /stream/<n>, POST /sink."""
    import asyncio

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, _, rest = head.partition(b"\r\n")
                method, path, _ = line.split(b" ", 2)
                fields = {k.strip().lower(): v.strip() for k, _, v in
                          (h.partition(b":") for h in rest.split(b"\r\n") if h)}
                if method == b"POST":
                    remaining = int(fields.get(b"content-length", b"0"))
                    while remaining:
                        data = await reader.read(min(remaining, 1 << 20))
                        if not data:
                            return
                        remaining -= len(data)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                elif path.startswith(b"/stream/"):
                    size = int(path.rsplit(b"/", 1)[1])
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream"
                                 b"\r\nContent-Length: %d\r\n\r\n" % size)
                    while size:
                        piece = PATTERN[:min(size, len(PATTERN))]
                        writer.write(piece)
                        size -= len(piece)
                        await writer.drain()
                else:
                    body = BODIES.get(path, b"")
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    await asyncio.Event().wait()


def throughput(info: DemoInfo, tmp: Path, seconds: int, bulk_mib: int, meter: CpuMeter,
               relay_only: bool = False, spy_dir: Path | None = None
               ) -> dict[str, dict[str, Any]]:
    """wrk and curl through the relay, direct to the origin and through ``ssh -R``.

    Through the relay, the relay's and the agent's CPU time is measured for each run
    (``cpu``: seconds per process); with ``spy_dir``, py-spy samples both during the page runs.
    """
    device = info.device(PROFILE)
    procs = Procs(tmp)
    client = _client(info)
    results: dict[str, dict[str, Any]] = {}
    session: dict[str, Any] = {}
    headers: dict[str, str] = {}
    try:
        procs.start("origin", [sys.executable, __file__, "--origin", str(tmp / "origin.port")])
        for _ in range(200):
            if (tmp / "origin.port").exists() and (tmp / "origin.port").read_text():
                break
            time.sleep(0.05)
        origin_port = int((tmp / "origin.port").read_text())
        # the device record's web endpoint now names the fast origin (identity: same SNMP)
        patched = httpx.patch(f"{info.api_url}/devices/{device.id}",
                              json={"ews_endpoints": [{"scheme": "http", "port": origin_port}]},
                              headers={"Authorization": f"Bearer {info.api_token}"}, timeout=30)
        patched.raise_for_status()
        login = info.logins["technician"]
        client.post(f"{info.api_url}/auth/login", json={
            "email": login["email"], "password": login["password"]}).raise_for_status()
        csrf = client.get(f"{info.api_url}/auth/me").json()["csrf_token"]
        headers = {"X-CSRF-Token": csrf, "Origin": info.portal_url}
        session = client.post(f"{info.api_url}/devices/{device.id}/remote-sessions", json={},
                              headers=headers).json()
        for _ in range(300):
            if session["status"] not in ("verifying", "connecting"):
                break
            time.sleep(0.1)
            session = client.get(
                f"{info.api_url}/remote-sessions/{session['session_id']}").json()
        client.get(session["url"], follow_redirects=True).raise_for_status()
        cookie = next(c.value for c in client.cookies.jar if c.name == RELAY_COOKIE)
        relay_port = info.relay_url.rsplit(":", 1)[1].strip("/")
        session_host = session["url"].split("//", 1)[1].split("/", 1)[0]
        # wrk and curl dial 127.0.0.1 and name the session in Host (the relay routes by Host)
        relay_headers = [f"Host: {session_host}", f"Cookie: {RELAY_COOKIE}={cookie}",
                         "Sec-Fetch-Site: same-origin", f"Origin: https://{session_host}"]
        ssh_port, _names = start_ssh(procs, tmp, origin_port)
        source = tmp / "upload.bin"
        with source.open("wb") as handle:
            for _ in range(bulk_mib * 4):
                handle.write(PATTERN)
        bulk = bulk_mib << 20
        paths = {
            "direct HTTP to the device": (f"http://127.0.0.1:{origin_port}", []),
            RELAY_LABEL: (f"https://127.0.0.1:{relay_port}", relay_headers),
            "OpenSSH ssh -N -R (aes128-gcm)": (f"http://127.0.0.1:{ssh_port}", []),
        }
        if relay_only:
            paths = {RELAY_LABEL: paths[RELAY_LABEL]}
        for label, (base, extra) in paths.items():
            print(f"  {label}", file=sys.stderr)
            row: dict[str, Any] = {"cpu": {}}
            metered = label == RELAY_LABEL
            runs: dict[str, tuple[Any, ...]] = {
                "/1k": (_wrk, base + "/1k", extra, seconds),
                "/64k": (_wrk, base + "/64k", extra, seconds),
                "c1": (_wrk, base + "/1k", extra, seconds, 1),
                "down": (_curl, [f"{base}/stream/{bulk}"], extra, "speed_download"),
                "up": (_curl, ["-H", "Content-Type: application/octet-stream", "--data-binary",
                               f"@{source}", f"{base}/sink"], extra, "speed_upload"),
            }
            for key, (run, *run_args) in runs.items():
                spies = []
                if metered and spy_dir is not None:
                    spies = [_py_spy(pid, spy_dir / f"{name}-{key.strip('/')}.txt", seconds)
                             for name, pid in meter.pids.items()]
                before = meter.snapshot()
                row[key] = run(*run_args)
                row["cpu"][key] = meter.since(before)
                for spy in spies:
                    if spy is not None:
                        spy.wait(timeout=60)
            results[label] = row
        source.unlink()
    finally:
        procs.stop_all()
        if session:
            client.delete(f"{info.api_url}/remote-sessions/{session['session_id']}",
                          headers=headers)
        client.close()
    return results


# -- main ----------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 sessions, 3 s wrk, 64 MiB bulk")
    parser.add_argument("--sessions", type=int, default=10, help="sessions timed (max 50)")
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run (max 60)")
    parser.add_argument("--bulk-mib", type=int, default=256, help="bulk size (max 2048)")
    parser.add_argument("--throughput-only", action="store_true",
                        help="skip the time-to-first-page part")
    parser.add_argument("--relay-only", action="store_true",
                        help="throughput through the relay only (no direct / ssh columns)")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="sample the relay and the agent with py-spy during the page runs "
                        "(raw collapsed stacks in DIR)")
    parser.add_argument("--origin", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.origin:
        import asyncio

        asyncio.run(_origin(Path(args.origin)))
        return 0
    sessions = max(1, min(5 if args.quick else args.sessions, 50))
    seconds = max(1, min(3 if args.quick else args.seconds, 60))
    bulk = max(1, min(64 if args.quick else args.bulk_mib, 2048))
    missing = [tool for tool in ("wrk", "curl", "ssh", "ssh-keygen") if not shutil.which(tool)]
    if missing or not Path("/usr/sbin/sshd").exists():
        print(f"needed: wrk, curl, openssh-server and -client (missing: {missing or 'sshd'}); "
              "make system-deps", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        stack = DemoStack(tmp / "demo", _free_block(), profiles=(PROFILE,))
        with stack as info:
            runs: dict[str, list[float]] = {}
            if not args.throughput_only:
                print("time to first page …", file=sys.stderr)
                runs = time_to_first_page(info, sessions)
            print("throughput …", file=sys.stderr)
            meter = CpuMeter({p.name: p.popen.pid for p in stack.supervisor.processes
                              if p.name in ("relay", "agent", "portal")})
            if args.py_spy is not None:
                args.py_spy.mkdir(parents=True, exist_ok=True)
            results = throughput(info, tmp, seconds, bulk, meter, args.relay_only,
                                 args.py_spy)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    print(f"\n### Throughput (a fast keep-alive origin as the device's web server; wrk 32 "
          f"connections, {seconds} s each; curl bulk {bulk} MiB each way; {when}, load "
          f"average {load:.1f})\n")
    labels = list(results)
    print("| metric | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for size, name in (("/1k", "1 KiB"), ("/64k", "64 KiB")):
        print(f"| {name} page ({size}, text/html) req/s | "
              + " | ".join(f"{results[x][size]['rps']:.0f}" for x in labels) + " |")
        print(f"| {name} p50 / p99 ms | " + " | ".join(
            f"{results[x][size]['p50']:.2f} / {results[x][size]['p99']:.2f}" for x in labels)
            + " |")
    print("| 1 KiB page, one connection: req/s, p50 ms | " + " | ".join(
        f"{results[x]['c1']['rps']:.0f}, {results[x]['c1']['p50']:.2f}" for x in labels) + " |")
    print("| bulk download MB/s | " + " | ".join(f"{results[x]['down']:.0f}" for x in labels)
          + " |")
    print("| bulk upload MB/s | " + " | ".join(f"{results[x]['up']:.0f}" for x in labels)
          + " |")
    relay = results[RELAY_LABEL]
    print("\nCPU through the relay (relay process / agent process / portal process, which takes "
          "the access log):\n")
    print("| run | relay | agent | portal |")
    print("|---|---|---|---|")
    for key, name in (("/1k", "1 KiB page"), ("/64k", "64 KiB page"),
                      ("c1", "1 KiB page, one connection")):
        count = relay[key]["requests"]
        cpu = relay["cpu"][key]
        print(f"| {name}, ms CPU per request | " + " | ".join(
            f"{cpu.get(p, 0) * 1000 / count:.3f}" for p in ("relay", "agent", "portal")) + " |")
    for key, name in (("down", "bulk download"), ("up", "bulk upload")):
        cpu = relay["cpu"][key]
        print(f"| {name}, ms CPU per MiB | " + " | ".join(
            f"{cpu.get(p, 0) * 1000 / bulk:.2f}" for p in ("relay", "agent", "portal")) + " |")
    if not runs:
        return 0
    print(f"\n### Time to first page ({sessions} sessions one after another, demo stack on "
          f"loopback, {os.cpu_count()} cores shared)\n")
    print("| phase | p50 ms | p99 ms |")
    print("|---|---|---|")
    for name, values in runs.items():
        print(f"| {name} | {statistics.median(values):.0f} | {_pct(values, 0.99):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
