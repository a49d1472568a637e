"""Benchmark: the ewsgate tunnel vs a direct connection vs OpenSSH's reverse tunnel.

Three paths to the same local HTTP origin, measured side by side in one run::

    direct   client ------------------------------------------------> origin
    tunnel   client -> relay front door -> TLS 1.3 tunnel -> agent -> origin
    ssh      client -> sshd (-R listener) -> SSH (aes128-gcm) -> ssh -> origin

The relay and the agent are separate processes (as in production); so are sshd and the ssh
client (a local ``sshd`` on a free loopback port with its own generated config, host key and
authorized key). The tunnel's relay side is a plain TCP "front door" that opens one tunnel
stream per accepted connection, the same shape as ``ssh -R``.

Rows: bulk 1 GiB (curl, MB/s); many small transfers with wrk (1 KiB and 64 KiB bodies, 32 and
256 concurrent connections, i.e. concurrent streams: ops/s, p50/p99 ms); RSS of the tunnel
processes when idle, per extra idle tunnel and per open stream; CPU seconds per GiB of bulk.
Every process is started here and stopped in ``finally``. Usage::

    python bench/tunnel_bench.py [--duration 8] [--bulk-mib 1024] [--no-uvloop] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psutil

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
#: the child processes (origin, relay, agent) run this small module, not this one: a tunnel
#: process should hold the tunnel's code and nothing of the benchmark harness (its imports and
#: the origin's bodies cost ~2.7 MiB of RSS per process, counted in the "RSS idle" row)
ROLES = HERE.with_name("tunnel_roles.py")
SETPRIV = shutil.which("setpriv")
SESSIONS = 11  # one tunnel for the traffic + 10 idle ones for the per-tunnel RSS figure

# ---------------------------------------------------------------------------------------------
# the parent: set up, measure, print


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Any, what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_port(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Procs:
    """Every process started by the benchmark; all stopped by :meth:`stop_all`."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 -- closed with the process
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        if SETPRIV:  # the kernel stops the child if this process dies without cleaning up
            argv = [SETPRIV, "--pdeathsig", "TERM", *argv]
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def tree(self, *names: str) -> list[psutil.Process]:
        import psutil

        out = []
        for name in names:
            with contextlib.suppress(psutil.NoSuchProcess, KeyError):
                root = psutil.Process(self.procs[name].pid)
                out += [root, *root.children(recursive=True)]
        return out

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def rss_mib(procs: list[psutil.Process]) -> float:
    import psutil

    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total / (1 << 20)


def cpu_s(procs: list[psutil.Process]) -> float:
    import psutil

    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def make_credentials(tmp: Path, sessions: int) -> list[str]:
    sys.path.insert(0, str(REPO / "src"))
    from cryptography.hazmat.primitives import serialization

    from ewsgate import pki
    from ewsgate.portal.oauth.keys import SigningKeys
    from ewsgate.portal.oauth.tokens import TokenIssuer
    from ewsgate.revocations import cert_thumbprint

    now = dt.datetime.now(dt.UTC)
    ca = pki.create_ca("bench CA", now=now)
    relay = ca.issue_server_cert(ip_addresses=["127.0.0.1"], now=now)
    inst = ca.issue_installation_cert("bench-installation", now=now)
    (tmp / "ca.crt").write_bytes(ca.cert_pem)
    (tmp / "relay.crt").write_bytes(pki.cert_to_pem(relay.cert))
    (tmp / "relay.key").write_bytes(pki.key_to_pem(relay.key))
    (tmp / "agent.crt").write_bytes(pki.cert_to_pem(inst.cert))
    (tmp / "agent.key").write_bytes(pki.key_to_pem(inst.key))
    keys = SigningKeys.open(tmp / "portal", lambda: dt.datetime.now(dt.UTC))
    (tmp / "jwks.json").write_text(json.dumps(keys.jwks()))
    issuer = TokenIssuer(keys, "https://portal.bench", lambda: dt.datetime.now(dt.UTC))
    thumbprint = cert_thumbprint(inst.cert.public_bytes(serialization.Encoding.DER))
    return [issuer.tunnel_ticket(relay_id="bench-relay", installation_id="bench-installation",
                                 session_id=f"bench-{i}",
                                 expires_at=now + dt.timedelta(minutes=29),
                                 device={"ip": "127.0.0.1", "hostname": "",
                                         "endpoints": [{"scheme": "http", "port": 1}]},
                                 certificate_thumbprint=thumbprint).token
            for i in range(sessions)]


def start_ssh(procs: Procs, tmp: Path, origin_port: int, extra: int = 0) -> tuple[int, list[str]]:
    """sshd on a free port, and ``ssh -N -R`` clients; returns (forwarded port, names)."""
    ssh_dir = tmp / "ssh"
    ssh_dir.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh_dir / "host")],
                   check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh_dir / "user")],
                   check=True)
    shutil.copy(ssh_dir / "user.pub", ssh_dir / "authorized_keys")
    sshd_port = free_port()
    (ssh_dir / "sshd_config").write_text(f"""\
Port {sshd_port}
ListenAddress 127.0.0.1
HostKey {ssh_dir / 'host'}
AuthorizedKeysFile {ssh_dir / 'authorized_keys'}
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
StrictModes no
AllowTcpForwarding yes
GatewayPorts no
PidFile none
Ciphers aes128-gcm@openssh.com
LogLevel ERROR
""")
    os.makedirs("/run/sshd", exist_ok=True)
    procs.start("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", str(ssh_dir / "sshd_config")])
    wait_for(lambda: wait_port(sshd_port), "sshd")
    names = []
    forwarded = 0
    for index in range(1 + extra):
        fwd = free_port()
        forwarded = forwarded or fwd
        name = f"ssh{index}"
        procs.start(name, [
            "ssh", "-N", "-T", "-c", "aes128-gcm@openssh.com", "-p", str(sshd_port),
            "-i", str(ssh_dir / "user"), "-o", "StrictHostKeyChecking=no",
            "-o", f"UserKnownHostsFile={os.devnull}", "-o", "ExitOnForwardFailure=yes",
            "-o", "BatchMode=yes", "-R", f"127.0.0.1:{fwd}:127.0.0.1:{origin_port}",
            "root@127.0.0.1"])
        wait_for(lambda port=fwd: wait_port(port), f"ssh -R {fwd}")
        names.append(name)
    return forwarded, names


def bulk(port: int, size: int, tracked: list[psutil.Process]) -> tuple[float, float]:
    """(MB/s, CPU seconds of the tracked processes per GiB)."""
    before = cpu_s(tracked)
    out = subprocess.run(["curl", "-s", "-o", os.devnull,
                          "-w", "%{speed_download} %{size_download}",
                          f"http://127.0.0.1:{port}/bulk/{size}"],
                         capture_output=True, text=True, check=True, timeout=600)
    speed, got = out.stdout.split()
    if int(float(got)) != size:
        raise RuntimeError(f"bulk transfer got {got} of {size} bytes")
    used = cpu_s(tracked) - before
    return float(speed) / 1e6, used / (size / (1 << 30))


def wrk_figures(out: str) -> dict[str, float]:
    """wrk --latency output → requests/s, p50 and p99 (ms), requests (NaN where missing)."""

    def ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"^\s*(\d+) requests in", out, re.M)
    return {"rps": float(rps.group(1)) if rps else float("nan"), "p50": ms("50"),
            "p99": ms("99"), "requests": float(total.group(1)) if total else float("nan")}


def wrk_problem(out: str) -> str | None:
    """wrk's line about socket errors or non-2xx/3xx answers, if it printed one."""
    errors = re.search(r"Socket errors: .*|Non-2xx or 3xx responses: .*", out)
    return errors.group(0) if errors else None


def wrk(port: int, path: str, conns: int, seconds: int) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms)."""
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency",
                          f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    if problem := wrk_problem(out):
        print(f"    wrk {path} c{conns}: {problem}", file=sys.stderr)
    figures = wrk_figures(out)
    return figures["rps"], figures["p50"], figures["p99"]


@contextlib.contextmanager
def open_idle_streams(port: int, count: int) -> Iterator[None]:
    """``count`` idle TCP connections through a path (each one a stream/channel)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port))
            # one request each, so the stream/channel and its device connection really exist
            sock.sendall(b"GET /1k HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(sock)
        for sock in socks:
            got = b""
            while b"\r\n\r\n" not in got:
                got += sock.recv(65536)
        time.sleep(0.5)
        yield
    finally:
        for sock in socks:
            sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--bulk-mib", type=int, default=1024)
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--quick", action="store_true", help="2 s wrk runs, 256 MiB bulk")
    parser.add_argument("--paths", default="direct,tunnel,ssh")
    parser.add_argument("--streams", type=int, default=200, help="idle streams for RSS/stream")
    parser.add_argument("--hold", type=float, default=0,
                        help="set up, print the ports, keep running this many seconds, stop")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.bulk_mib = 2, 256
    uv = [] if args.no_uvloop else ["--uvloop"]
    paths = args.paths.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="ewsgate-tunnel-bench-"))
    procs = Procs(tmp)
    me = [sys.executable, str(ROLES)]
    results: dict[str, dict[str, Any]] = {}
    row: dict[str, Any]
    try:
        procs.start("origin", [*me, "origin", str(tmp / "origin.port"), *uv])
        wait_for(lambda: (tmp / "origin.port").exists(), "origin")
        origin_port = int((tmp / "origin.port").read_text())
        ports: dict[str, int] = {"direct": origin_port}
        tracked: dict[str, list[str]] = {"direct": []}
        if "tunnel" in paths:
            tickets = make_credentials(tmp, SESSIONS)
            cfg = {"tmp": str(tmp), "origin_port": origin_port, "tickets": tickets,
                   "sessions": 1}
            (tmp / "bench.json").write_text(json.dumps(cfg))
            procs.start("relay", [*me, "relay", str(tmp / "bench.json"), *uv])
            wait_for(lambda: (tmp / "relay.json").exists(), "relay")
            procs.start("agent", [*me, "agent", str(tmp / "bench.json"), *uv])
            wait_for(lambda: (tmp / "agent.ready").exists(), "agent tunnel")
            ports["tunnel"] = json.loads((tmp / "relay.json").read_text())["front_port"]
            tracked["tunnel"] = ["relay", "agent"]
        if "ssh" in paths:
            ports["ssh"], names = start_ssh(procs, tmp, origin_port)
            tracked["ssh"] = ["sshd", *names]
        if args.hold:
            print(json.dumps(ports), flush=True)
            time.sleep(args.hold)
            return 0
        # memory first, on fresh processes: idle, per open stream, per extra idle tunnel
        for path in paths:
            row = results.setdefault(path, {})
            tree = procs.tree(*tracked[path])
            subprocess.run(["curl", "-s", "-o", os.devnull, f"http://127.0.0.1:{ports[path]}/1k"],
                           check=True)
            time.sleep(0.5)
            row["rss_idle"] = rss_mib(tree) if tree else float("nan")
            if path == "tunnel":  # the agent with one tunnel, before any stream ran through it
                agent1 = rss_mib(procs.tree("agent"))
            row["rss_stream_kib"] = float("nan")
            if tree:
                print(f"[{path}] {args.streams} idle streams ...", file=sys.stderr)
                base = rss_mib(procs.tree(*tracked[path]))
                with open_idle_streams(ports[path], args.streams):
                    loaded = rss_mib(procs.tree(*tracked[path]))
                row["rss_stream_kib"] = (loaded - base) * 1024 / args.streams
        if "tunnel" in paths:
            print(f"[tunnel] {SESSIONS - 1} more tunnels ...", file=sys.stderr)
            relay_before = rss_mib(procs.tree("relay"))
            cfg["sessions"], cfg["first"] = SESSIONS, 1
            (tmp / "bench.json").write_text(json.dumps(cfg))
            (tmp / "agent.ready").unlink()
            procs.start("agent2", [*me, "agent", str(tmp / "bench.json"), *uv])
            wait_for(lambda: (tmp / "agent.ready").exists() and
                     (tmp / "agent.ready").read_text() == str(SESSIONS), "10 more tunnels")
            time.sleep(0.5)
            # agent2 is a second agent process holding 10 tunnels, agent holds 1: the agent's
            # cost per tunnel is (agent2 - agent) / 9, with agent as it was before the idle
            # streams above grew its heap (agent2 carries no stream); the relay's is its
            # growth / 10
            per_agent = (rss_mib(procs.tree("agent2")) - agent1) / (SESSIONS - 2)
            per_relay = (rss_mib(procs.tree("relay")) - relay_before) / (SESSIONS - 1)
            results["tunnel"]["rss_tunnel"] = per_agent + per_relay
            procs.stop("agent2")
        if "ssh" in paths:
            print(f"[ssh] {SESSIONS - 1} more tunnels ...", file=sys.stderr)
            before = rss_mib(procs.tree(*tracked["ssh"]))
            _, extra = _more_ssh(procs, tmp, origin_port, SESSIONS - 1)
            time.sleep(0.5)
            after = rss_mib(procs.tree(*tracked["ssh"], *extra))
            results["ssh"]["rss_tunnel"] = (after - before) / (SESSIONS - 1)
            for name in extra:
                procs.stop(name)
        # then throughput and latency
        size = args.bulk_mib << 20
        for path in paths:
            port = ports[path]
            row = results[path]
            tree = procs.tree(*tracked[path])
            print(f"[{path}] bulk {args.bulk_mib} MiB ...", file=sys.stderr)
            row["bulk"], row["cpu_gib"] = bulk(port, size, tree)
            for body in ("1k", "64k"):
                for conns in (32, 256):
                    print(f"[{path}] wrk /{body} c{conns} ...", file=sys.stderr)
                    row[f"{body}_{conns}"] = wrk(port, f"/{body}", conns, args.duration)
    except Exception:
        for log in sorted(tmp.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(results, args, uv)
    return 0


def _more_ssh(procs: Procs, tmp: Path, origin_port: int, count: int) -> tuple[int, list[str]]:
    cfg = (tmp / "ssh" / "sshd_config").read_text()
    sshd_port = int(re.search(r"^Port (\d+)", cfg, re.M).group(1))  # type: ignore[union-attr]
    names = []
    for index in range(count):
        fwd = free_port()
        name = f"ssh-extra{index}"
        procs.start(name, [
            "ssh", "-N", "-T", "-c", "aes128-gcm@openssh.com", "-p", str(sshd_port),
            "-i", str(tmp / "ssh" / "user"), "-o", "StrictHostKeyChecking=no",
            "-o", f"UserKnownHostsFile={os.devnull}", "-o", "BatchMode=yes",
            "-R", f"127.0.0.1:{fwd}:127.0.0.1:{origin_port}", "root@127.0.0.1"])
        wait_for(lambda port=fwd: wait_port(port), f"ssh -R {fwd}")
        names.append(name)
    return 0, names


def print_table(results: dict[str, dict[str, Any]], args: argparse.Namespace,
                uv: list[str]) -> None:
    def f(value: float, digits: int = 0) -> str:
        return "n/a" if value != value else f"{value:,.{digits}f}"

    print(f"\nTunnel benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"{'uvloop' if uv else 'asyncio'}; wrk -t2 {args.duration}s per cell; "
          f"bulk {args.bulk_mib} MiB; {os.cpu_count()} CPUs shared by everything)\n")
    paths = list(results)
    print("| metric | " + " | ".join(paths) + " |")
    print("|---|" + "---|" * len(paths))
    print("| bulk MB/s | " + " | ".join(f(results[p]["bulk"]) for p in paths) + " |")
    for body in ("1k", "64k"):
        for conns in (32, 256):
            label = f"{body.upper().replace('K', ' KiB')} x{conns}"
            cells = [results[p][f"{body}_{conns}"] for p in paths]
            print(f"| {label} ops/s | " + " | ".join(f(c[0]) for c in cells) + " |")
            print(f"| {label} p50 / p99 ms | " + " | ".join(
                f"{f(c[1], 2)} / {f(c[2], 2)}" for c in cells) + " |")
    print("| RSS idle, one tunnel (MiB) | " + " | ".join(
        f(results[p]["rss_idle"], 1) for p in paths) + " |")
    print("| RSS per extra idle tunnel (MiB) | " + " | ".join(
        f(results[p].get("rss_tunnel", float("nan")), 2) for p in paths) + " |")
    print("| RSS per open stream (KiB) | " + " | ".join(
        f(results[p]["rss_stream_kib"], 1) for p in paths) + " |")
    print("| CPU s per GiB (tunnel processes) | " + " | ".join(
        f(results[p]["cpu_gib"], 2) if results[p]["cpu_gib"] else "n/a" for p in paths) + " |")


if __name__ == "__main__":
    sys.exit(main())
