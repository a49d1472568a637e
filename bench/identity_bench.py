"""Identity-check latency: first check and warm checks (p50/p99), SNMP v2c and v3, as a table.

The simulated printer's SNMP agent runs in a child process (this script with ``--serve``), so
the agent under test does not share its event loop with the responder. Rows:

* ``first check (fresh process)``: a new Python process imports ewsgate, creates the SNMP
  engine and runs one check - what the agent pays once after start;
* ``first check (new engine)``: in a warm process, the first check on a new engine (for v3 this
  includes the USM engine-ID discovery round trip);
* ``warm checks``: N further checks on the same engine, one at a time;
* ``reference: snmpget process``: net-snmp's ``snmpget`` reading the same two OIDs, one process
  per request (what shelling out would cost);
* ``silent device``: a port that never answers, timeout 1 s: the time to fail closed.

Run: ``.venv/bin/python bench/identity_bench.py [--warm 200]``. Bounded: at most 2000 warm
checks per row, every child process is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MAC = "a0:d3:c1:4a:2b:3c"
SERIAL = "CNBRM5K0QZ"
V3 = {"v3_user": "tech", "v3_auth_key": "authkey123", "v3_priv_key": "privkey123"}
HERE = Path(__file__).resolve()


async def _serve() -> None:
    from ewsgate.config import HostPort
    from ewsgate.devicesim.snmp_agent import SnmpAgentConfig, serve_snmp

    handle = await serve_snmp(SnmpAgentConfig(listen=HostPort("127.0.0.1", 0), profile="hp",
                                              mac=MAC, serial=SERIAL, **V3))
    print(handle.address.port, flush=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        handle.close()


def _request(version: str, method: str, port: int) -> Any:
    from ewsgate.agent.identity import IdentityRequest, SnmpSettings

    settings = (SnmpSettings(port=port) if version == "2c"
                else SnmpSettings(port=port, version="3", **V3))
    return IdentityRequest(ip="127.0.0.1", method=method, make="HP",  # type: ignore[arg-type]
                           expected_mac=MAC, expected_serial=SERIAL, snmp=settings)


async def _first_only(version: str, port: int) -> None:
    started = time.perf_counter()
    from ewsgate.agent.identity import check_identity
    from ewsgate.agent.snmp.neighbours import StaticNeighbourTable

    result = await check_identity(_request(version, "mac", port),
                                  arp_table=StaticNeighbourTable({}))
    print(json.dumps({"seconds": time.perf_counter() - started, "result": result.result}))


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def _bench(warm: int) -> list[tuple[str, str, int, float, float, float]]:
    from ewsgate.agent.identity import check_identity
    from ewsgate.agent.snmp.client import SnmpClient
    from ewsgate.agent.snmp.neighbours import StaticNeighbourTable

    table = StaticNeighbourTable({})
    rows: list[tuple[str, str, int, float, float, float]] = []
    server = subprocess.Popen([sys.executable, str(HERE), "--serve"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        for version in ("2c", "3"):
            child = subprocess.run([sys.executable, str(HERE), "--first-only", version,
                                    str(port)], capture_output=True, text=True, timeout=60,
                                   check=True)
            first = json.loads(child.stdout.strip().splitlines()[-1])
            assert first["result"] == "verified", first
            ms = first["seconds"] * 1000
            rows.append((f"v{version}", "first check (fresh process, incl. imports)", 1,
                         ms, ms, ms))
            for method in ("mac", "serial"):
                client = SnmpClient()
                try:
                    request = _request(version, method, port)
                    started = time.perf_counter()
                    result = await check_identity(request, arp_table=table, snmp_client=client)
                    ms = (time.perf_counter() - started) * 1000
                    assert result.result == "verified", result.detail
                    rows.append((f"v{version}", f"first {method} check (new engine)", 1,
                                 ms, ms, ms))
                    samples = []
                    for _ in range(warm):
                        started = time.perf_counter()
                        result = await check_identity(request, arp_table=table,
                                                      snmp_client=client)
                        samples.append((time.perf_counter() - started) * 1000)
                        assert result.result == "verified", result.detail
                    rows.append((f"v{version}", f"warm {method} checks", warm,
                                 _percentile(samples, 0.5), _percentile(samples, 0.99),
                                 statistics.fmean(samples)))
                finally:
                    client.close()
        if shutil.which("snmpget"):
            samples = []
            for _ in range(min(warm, 50)):
                started = time.perf_counter()
                subprocess.run(["snmpget", "-v2c", "-c", "public", f"127.0.0.1:{port}",
                                "1.3.6.1.2.1.4.20.1.2.127.0.0.1", "1.3.6.1.2.1.2.2.1.6.2"],
                               capture_output=True, check=True, timeout=10,
                               env={**os.environ, "MIBS": ""})
                samples.append((time.perf_counter() - started) * 1000)
            rows.append(("v2c", "reference: snmpget process per request", len(samples),
                         _percentile(samples, 0.5), _percentile(samples, 0.99),
                         statistics.fmean(samples)))
    finally:
        if server.stdin:
            server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent_port = silent.getsockname()[1]
        from ewsgate.agent.identity import IdentityRequest, SnmpSettings

        client = SnmpClient()
        samples = []
        try:
            for _ in range(3):
                request = IdentityRequest(ip="127.0.0.1", method="mac", expected_mac=MAC,
                                          snmp=SnmpSettings(port=silent_port), timeout=1.0)
                started = time.perf_counter()
                result = await check_identity(request, arp_table=table, snmp_client=client)
                samples.append((time.perf_counter() - started) * 1000)
                assert result.result == "unknown"
        finally:
            client.close()
        rows.append(("v2c", "silent device, timeout 1 s -> unknown", len(samples),
                     _percentile(samples, 0.5), max(samples), statistics.fmean(samples)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=200, help="warm checks per row (max 2000)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--first-only", nargs=2, metavar=("VERSION", "PORT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve())
        return 0
    if args.first_only:
        asyncio.run(_first_only(args.first_only[0], int(args.first_only[1])))
        return 0
    warm = max(1, min(args.warm, 2000))
    rows = asyncio.run(_bench(warm))
    print(f"Identity check latency (simulated HP printer on 127.0.0.1, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]})")
    print()
    print("| SNMP | what | n | p50 ms | p99 ms | mean ms |")
    print("|---|---|---|---|---|---|")
    for version, what, count, p50, p99, mean in rows:
        print(f"| {version} | {what} | {count} | {p50:.1f} | {p99:.1f} | {mean:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
