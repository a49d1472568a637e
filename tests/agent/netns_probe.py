"""Run inside a fresh network namespace by ``test_netns_no_packets.py`` (``unshare -n``, root).

It builds a small world: loopback up with the cloud metadata addresses on it, a veth pair
``lan0``/``lan1`` as the site LAN with the agent's own addresses 10.9.0.1 and 2001:db8:9::1, a
device's permanent neighbour entries (10.9.0.5, 2001:db8:9::5), default routes out of ``lan0``.
Then, with a raw AF_PACKET socket counting every frame on every interface, it runs the agent's
real entry points for each forbidden target -- ``VerifyDevice`` (SNMP on, and SNMP off so the
neighbour-table priming would connect), ``OpenSession``, the device dialer -- and prints one
JSON object: the refusals, the frames toward each forbidden target (expected: none), the frames
toward the allowed device (expected: some, so the counter is shown to work), and the frames
seen when the probe itself sends one datagram to each forbidden address afterwards (expected:
some, so "none" above means the agent sent none, not that the counter was blind there).

All set-up commands run before asyncio, SNMP or any thread starts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import socket
import struct
import subprocess
import sys
from typing import Any

MAC = "a0:d3:c1:4a:2b:3c"
SETUP = [
    "ip link set lo up",
    "ip link add lan0 type veth peer name lan1",
    "ip link set lan0 up",
    "ip link set lan1 up",
    "ip addr add 10.9.0.1/24 brd + dev lan0",
    "ip -6 addr add 2001:db8:9::1/64 dev lan0 nodad",
    f"ip neigh add 10.9.0.5 lladdr {MAC} dev lan0 nud permanent",
    f"ip -6 neigh add 2001:db8:9::5 lladdr {MAC} dev lan0 nud permanent",
    "ip addr add 169.254.169.254/32 dev lo",
    "ip addr add 100.100.100.200/32 dev lo",
    "ip addr add 192.0.0.192/32 dev lo",
    "ip addr add 100.64.0.5/32 dev lo",
    "ip -6 addr add fd00:ec2::254/128 dev lo nodad",
    "ip route add default dev lan0",
    "ip -6 route add default dev lan0",
]

#: refused by the fixed rules or the own-host rule, under the default (production) policy
FORBIDDEN = ["127.0.0.1", "::1", "169.254.169.254", "fd00:ec2::254", "100.100.100.200",
             "192.0.0.192", "100.64.0.5", "10.9.0.1", "2001:db8:9::1", "10.9.0.255", "10.9.0.0",
             "169.254.10.10", "fe80::1", "224.0.0.251", "ff02::1", "255.255.255.255",
             "240.0.0.1", "0.0.0.0", "::ffff:169.254.169.254", "::ffff:10.9.0.1",
             "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1"]
#: refused only because the installation's site subnets are set
OUTSIDE = ["10.20.0.5", "2001:db8:20::5"]
SITE = "10.9.0.0/24,2001:db8:9::/64"
ALLOWED = ["10.9.0.5", "2001:db8:9::5"]


def wire_addresses(target: str) -> set[str]:
    """Where a packet "to ``target``" would go on the wire (an IPv6 spelling of an IPv4
    address travels as IPv4; a connect to 0.0.0.0 reaches this host)."""
    ip = ipaddress.ip_address(target)
    found = {str(ip)}
    if isinstance(ip, ipaddress.IPv6Address):
        for inner in (ip.ipv4_mapped, ip.sixtofour,
                      ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
                      if ip in ipaddress.ip_network("64:ff9b::/96") else None):
            if inner is not None:
                found.add(str(inner))
    if ip.is_unspecified:
        found |= {"127.0.0.1", "::1"}
    return found


def toward(frame: bytes) -> set[str]:
    """The addresses one captured Ethernet frame (lo uses the same header) is sent toward."""
    if len(frame) < 14:
        return set()
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    body = frame[14:]
    if ethertype == 0x0800 and len(body) >= 20:
        return {str(ipaddress.IPv4Address(body[16:20]))}
    if ethertype == 0x0806 and len(body) >= 28:  # ARP: the target protocol address
        return {str(ipaddress.IPv4Address(body[24:28]))}
    if ethertype == 0x86DD and len(body) >= 40:
        found = {str(ipaddress.IPv6Address(body[24:40]))}
        if body[6] == 58 and len(body) >= 64 and body[40] == 135:  # neighbour solicitation
            found.add(str(ipaddress.IPv6Address(body[48:64])))
        return found
    return set()


class Capture:
    """Every frame on every interface of this namespace, counted by destination."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.setblocking(False)

    def drain(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _ in range(1_000_000):
            try:
                frame = self.sock.recv(65535)
            except BlockingIOError:
                break
            for address in toward(frame):
                counts[address] = counts.get(address, 0) + 1
        return counts


def count(counts: dict[str, int], target: str) -> int:
    return sum(counts.get(address, 0) for address in wire_addresses(target))


def context(kind: str, payload: dict[str, Any]) -> Any:
    from ewsgate.agent.control_client import CommandContext

    return CommandContext(id="probe", kind=kind, payload=payload,
                          deadline=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30),
                          progress=lambda stage, detail: None)


def identity(ip: str, snmp: str) -> dict[str, Any]:
    return {"ip": ip, "method": "mac", "expected_mac": MAC, "ews_port": 80, "timeout": 1.2,
            "snmp": {"version": snmp, "port": 161, "community": "public"}}


class NoTunnels:
    """OpenSession's tunnel side: it must never be reached for a refused device."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    async def open_session(self, spec: Any) -> Any:
        self.opened.append(spec.device.ip)

    async def close_session(self, session_id: str, reason: str = "") -> bool:
        return False


async def attempt(target: str, policy: Any) -> dict[str, Any]:
    """Every way the agent could send something toward ``target``; what each answered."""
    from ewsgate.agent.commands import default_handlers
    from ewsgate.agent.control_client import CommandFailure
    from ewsgate.agent.dialer import (
        DestinationRefused,
        DeviceDialer,
        DeviceEndpoint,
        DeviceTarget,
        DialPolicy,
    )
    from ewsgate.agent.session_commands import session_handlers

    outcome: dict[str, Any] = {}
    verify = default_handlers(address_policy=policy)["VerifyDevice"]
    for snmp in ("2c", "off"):
        result = await verify(context("VerifyDevice", identity(target, snmp)))
        outcome[f"verify_{snmp}"] = [result["result"], result["code"], result["detail"]]
    tunnels = NoTunnels()
    opened = session_handlers(tunnels, address_policy=policy)["OpenSession"]
    try:
        await opened(context("OpenSession", {
            "session_id": "s1", "expires_at_unix_ms": 2**41, "ticket": "t",
            "relay": {"tunnel_address": "127.0.0.1:9"},
            "device": {"ip": target, "endpoints": [{"scheme": "http", "port": 80}]},
            "identity": identity(target, "off")}))
        outcome["open_session"] = ["opened"]
    except CommandFailure as exc:
        outcome["open_session"] = [exc.code, str(exc)]
    outcome["tunnel_opened"] = tunnels.opened
    endpoints = (DeviceEndpoint("http", 80),)
    dial = DialPolicy(addresses=policy, connect_within=0.5)
    try:
        DeviceDialer(DeviceTarget(ip=target, endpoints=endpoints), dial)
        outcome["dialer"] = ["allowed"]
    except DestinationRefused as exc:
        outcome["dialer"] = ["refused", str(exc)]
    device = DeviceDialer(DeviceTarget(ip="10.9.0.5", endpoints=endpoints), dial)
    try:
        device.authorize(target, 80)
        outcome["authorize"] = ["allowed"]
    except DestinationRefused as exc:
        outcome["authorize"] = ["refused", str(exc)]
    return outcome


async def run(capture: Capture) -> dict[str, Any]:
    from ewsgate.agent.address_policy import AddressPolicy, parse_site_subnets
    from ewsgate.agent.snmp.neighbours import SystemNeighbourTable

    report: dict[str, Any] = {"refused": {}, "agent_frames": {}, "allowed": {},
                              "allowed_frames": {}, "control_frames": {}}
    production = AddressPolicy()
    site = AddressPolicy(site_subnets=parse_site_subnets(SITE))
    capture.drain()
    for target, policy in [*((t, production) for t in FORBIDDEN),
                           *((t, site) for t in OUTSIDE)]:
        report["refused"][target] = await attempt(target, policy)
    await asyncio.sleep(0.2)
    frames = capture.drain()
    for target in [*FORBIDDEN, *OUTSIDE]:
        report["agent_frames"][target] = count(frames, target)

    table = SystemNeighbourTable()
    report["neighbours"] = {ip: await table.lookup(ip) for ip in ALLOWED}
    for target in ALLOWED:
        report["allowed"][target] = await attempt(target, site)
    await asyncio.sleep(0.2)
    frames = capture.drain()
    for target in ALLOWED:
        report["allowed_frames"][target] = count(frames, target)

    # the counter's own check: one datagram from the probe to each forbidden address
    for target in [*FORBIDDEN, *OUTSIDE]:
        family = socket.AF_INET6 if ":" in target else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            try:
                sock.sendto(b"probe", (target, 9) if family == socket.AF_INET
                            else (target, 9, 0, socket.if_nametoindex("lan0")
                                  if target.startswith(("fe80", "ff02")) else 0))
            except OSError as exc:
                report["control_frames"][target] = f"not sendable: {exc}"
                continue
        await asyncio.sleep(0.05)
        report["control_frames"][target] = count(capture.drain(), target)
    return report


def main() -> int:
    for command in SETUP:
        done = subprocess.run(command.split(), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(json.dumps({"setup_failed": command, "stderr": done.stderr.strip()}))
            return 3
    capture = Capture()
    print(json.dumps(asyncio.run(run(capture))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
