"""The relay's browser side: requests/s, latency and bulk MB/s through it, next to direct.

Two child processes on free loopback ports:

* an **origin**: a small keep-alive HTTP/1.1 server standing in for a fast device
  (``/1k`` and ``/64k`` pages, ``/stream/<bytes>`` downloads, ``POST /sink`` uploads);
* the **relay proxy** (``RelayProxy`` over real TLS with a wildcard certificate from a throwaway
  CA), with one session mapped straight to the origin over TCP. The tunnel is left out on
  purpose: ``bench/tunnel_bench.py`` measures it. This isolates what the browser side costs:
  TLS, h11 parsing both ways, the checks and the rewriting.

Clients: ``wrk`` (32 connections, keep-alive) for 1 KiB and 64 KiB pages, ``curl`` for the bulk
download and upload. "direct" is plain HTTP to the origin; "relay" is HTTPS to the session host
with the session cookie. The relay's CPU seconds and peak RSS are read from its process.

Run: ``.venv/bin/python bench/relay_bench.py [--seconds 5] [--bulk-mib 512]``. Bounded: at most
60 s per wrk run and 4096 MiB of bulk; every child is stopped in ``finally``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

BODIES = {"/1k": b"a" * 1024, "/64k": b"b" * 65536}
PATTERN = bytes(range(256)) * 1024


# -- children --------------------------------------------------------------------------

async def _origin(port_file: Path) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, _, rest = head.partition(b"\r\n")
                method, path, _ = line.split(b" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in
                           (h.partition(b":") for h in rest.split(b"\r\n") if h)}
                if method == b"POST":
                    remaining = int(headers.get(b"content-length", b"0"))
                    while remaining:
                        data = await reader.read(min(remaining, 1 << 20))
                        if not data:
                            return
                        remaining -= len(data)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                elif path.startswith(b"/stream/"):
                    size = int(path.rsplit(b"/", 1)[1])
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                                 b"Content-Length: %d\r\n\r\n" % size)
                    while size:
                        piece = PATTERN[:min(size, len(PATTERN))]
                        writer.write(piece)
                        size -= len(piece)
                        await writer.drain()
                else:
                    body = BODIES.get(path.decode(), b"")
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    await asyncio.Event().wait()


async def _relay(origin_port: int, work: Path, info_file: Path) -> None:
    import socket
    import ssl

    import httpx
    import trustme

    from ewsgate.relay.access_log import AccessLog
    from ewsgate.relay.browser_auth import BrowserAuth, Identity, OAuthClientConfig
    from ewsgate.relay.clock import SystemClock
    from ewsgate.relay.http_proxy import ProxyConfig, RelayProxy
    from ewsgate.relay.tickets import JwksKeySource
    from ewsgate.relay.upstream import DeviceView, Endpoint, SessionInfo, StaticDirectory

    ca = trustme.CA()
    cert = ca.issue_cert("*.rt.localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    clock = SystemClock()
    config = ProxyConfig(domain="rt.localhost", portal_url="http://127.0.0.1:9",
                         public_port=port)
    sid = "benchbenchbenchbenchbenchbench22"
    directory = StaticDirectory()
    directory.add(SessionInfo(session_id=sid, expires_at=clock.now() + 1800,
                              device=DeviceView(ip="10.0.0.5",
                                                endpoints=(Endpoint("http", 80),)),
                              started_at=clock.now()),
                  [("127.0.0.1", origin_port)])
    http = httpx.AsyncClient()
    auth = BrowserAuth(OAuthClientConfig(relay_id="bench", relay_secret="bench",
                                         portal_url="http://127.0.0.1:9",
                                         cookie_key=os.urandom(32)),
                       session_host=config.session_host, clock=clock,
                       keys=JwksKeySource("http://127.0.0.1:9"), http=http)
    cookie = auth.make_cookie_value(Identity(session_id=sid, user_id="1",
                                             email="bench@example.com",
                                             expires_at=clock.now() + 1800))
    log = AccessLog(work / "spool", None)
    proxy = RelayProxy(config, directory, auth, log, clock)
    await asyncio.start_server(proxy.handle, sock=sock, ssl=context)
    info_file.write_text(json.dumps({"port": port, "host": config.session_host(sid),
                                     "cookie": f"__Host-ewsgate_rt={cookie}"}))
    await asyncio.Event().wait()


# -- the parent ------------------------------------------------------------------------

def _wait_file(path: Path, process: subprocess.Popen[bytes]) -> str:
    for _ in range(300):
        if path.exists() and path.read_text():
            return path.read_text()
        if process.poll() is not None:
            raise RuntimeError(f"child exited with {process.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"child did not write {path}")


def _wrk(url: str, headers: list[str], seconds: int, conns: int = 32) -> dict[str, float]:
    cmd = ["wrk", "-t", "2", "-c", str(conns), "-d", f"{seconds}s", "--latency"]
    for header in headers:
        cmd += ["-H", header]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 30,
                         check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(name: str) -> float:
        match = re.search(rf"\s{name}%\s+([\d.]+)(us|ms|s)", out)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(0)} from {url}")
    return {"rps": rate, "p50": pct("50"), "p99": pct("99")}


def _curl_download(url: str, headers: list[str]) -> float:
    cmd = ["curl", "-sk", "-o", "/dev/null", "-w", "%{speed_download}"]
    for header in headers:
        cmd += ["-H", header]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=300, check=True)
    return float(out.stdout) / 1e6


def _curl_upload(url: str, headers: list[str], source: Path) -> float:
    cmd = ["curl", "-sk", "-o", "/dev/null", "-w", "%{speed_upload}", "-H",
           "Content-Type: application/octet-stream", "-H", "Expect:", "--data-binary",
           f"@{source}"]
    for header in headers:
        cmd += ["-H", header]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=300, check=True)
    return float(out.stdout) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run (max 60)")
    parser.add_argument("--bulk-mib", type=int, default=512, help="bulk size (max 4096)")
    parser.add_argument("--child", choices=["origin", "relay"], help=argparse.SUPPRESS)
    parser.add_argument("--args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "origin":
        asyncio.run(_origin(Path(args.args[0])))
        return 0
    if args.child == "relay":
        asyncio.run(_relay(int(args.args[0]), Path(args.args[1]), Path(args.args[2])))
        return 0
    seconds = max(1, min(args.seconds, 60))
    bulk = max(1, min(args.bulk_mib, 4096)) * 1024 * 1024
    if not shutil.which("wrk") or not shutil.which("curl"):
        print("wrk and curl are needed (make system-deps)", file=sys.stderr)
        return 2
    children: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            origin = subprocess.Popen([sys.executable, __file__, "--child", "origin", "--args",
                                       str(tmp / "origin.port")])
            children.append(origin)
            origin_port = int(_wait_file(tmp / "origin.port", origin))
            relay = subprocess.Popen([sys.executable, __file__, "--child", "relay", "--args",
                                      str(origin_port), str(tmp), str(tmp / "relay.json")])
            children.append(relay)
            info = json.loads(_wait_file(tmp / "relay.json", relay))
            relay_proc = psutil.Process(relay.pid)
            cpu0 = relay_proc.cpu_times()
            direct = f"http://127.0.0.1:{origin_port}"
            through = f"https://127.0.0.1:{info['port']}"
            relay_headers = [f"Host: {info['host']}", f"Cookie: {info['cookie']}",
                             "Sec-Fetch-Site: same-origin", f"Origin: https://{info['host']}"]
            results: dict[str, dict[str, Any]] = {"direct": {}, "relay": {}}
            peak = relay_proc.memory_info().rss
            for label, base, headers in (("direct", direct, []),
                                         ("relay", through, relay_headers)):
                for page in ("/1k", "/64k"):
                    results[label][page] = _wrk(base + page, headers, seconds)
                    peak = max(peak, relay_proc.memory_info().rss)
                results[label]["down"] = _curl_download(f"{base}/stream/{bulk}", headers)
                source = tmp / "upload.bin"
                with source.open("wb") as handle:
                    for _ in range(bulk // len(PATTERN)):
                        handle.write(PATTERN)
                results[label]["up"] = _curl_upload(f"{base}/sink", headers, source)
                source.unlink()
                peak = max(peak, relay_proc.memory_info().rss)
            cpu1 = relay_proc.cpu_times()
            cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        finally:
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                child.wait(timeout=10)
    print(f"\nRelay browser side ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"wrk 32 connections, {seconds} s each; bulk {bulk >> 20} MiB; loopback, "
          f"{os.cpu_count()} cores shared)\n")
    print("| metric | direct (HTTP to origin) | relay (HTTPS, session cookie) |")
    print("|---|---|---|")
    for page in ("/1k", "/64k"):
        d, r = results["direct"][page], results["relay"][page]
        print(f"| {page} req/s | {d['rps']:.0f} | {r['rps']:.0f} |")
        print(f"| {page} p50 / p99 ms | {d['p50']:.2f} / {d['p99']:.2f} | "
              f"{r['p50']:.2f} / {r['p99']:.2f} |")
    print(f"| bulk download MB/s | {results['direct']['down']:.0f} | "
          f"{results['relay']['down']:.0f} |")
    print(f"| bulk upload MB/s | {results['direct']['up']:.0f} | {results['relay']['up']:.0f} |")
    print(f"| relay CPU s (whole run) / peak RSS MiB | | {cpu:.1f} / {peak / 2**20:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
