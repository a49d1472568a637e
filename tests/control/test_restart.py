"""Real processes: the portal is killed and restarted and the agent comes back online without
help; an agent that dies is shown offline within 10 s. Each process is stopped at the end,
whatever happens."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ewsgate.portal.control.runtime import load_portal_ca
from ewsgate.portal.store.db import Database

from .conftest import get_installation, new_installation, new_token

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Processes:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[subprocess.Popen] = []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        env = None
        if args and isinstance(args[0], dict):
            env, args = args[0], args[1:]
        env = env or {k: v for k, v in os.environ.items() if not k.startswith("EWSGATE_")
                      and k.lower() not in ("https_proxy", "http_proxy")}
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                                   stderr=log, env=env)
        self.running.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.terminate()
        for process in self.running:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


async def wait_ready(process: subprocess.Popen) -> None:
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)
    assert line.strip() == b"ready", line


async def wait_for(predicate, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await predicate():
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


async def test_agent_is_back_online_after_the_portal_is_killed_and_restarted(tmp_path,
                                                                             artifacts_dir):
    data = tmp_path / "portal"
    url = f"sqlite+aiosqlite:///{tmp_path / 'portal.sqlite3'}"
    database = Database(url)
    await database.upgrade()
    ca = load_portal_ca(data)
    installation_id = await new_installation(database)
    token = await new_token(database, ca, installation_id)
    grpc_port, enrol_port = free_port(), free_port()
    portal_args = (str(HERE / "portal_process.py"), url, str(data), f"127.0.0.1:{grpc_port}",
                   f"127.0.0.1:{enrol_port}")
    processes = Processes(tmp_path)

    async def online() -> bool:
        row = await get_installation(database, installation_id)
        return bool(row and row.online)

    async def offline() -> bool:
        return not await online()

    try:
        portal = processes.start("portal-1", *portal_args)
        await wait_ready(portal)
        enroll = processes.start("enroll", "-m", "ewsgate", "agent", "enroll", "--portal",
                                 f"127.0.0.1:{enrol_port}", "--token", token,
                                 "--data-dir", str(tmp_path / "agent"))
        assert await asyncio.to_thread(enroll.wait, 60) == 0
        agent = processes.start("agent", "-m", "ewsgate", "agent", "run",
                                "--data-dir", str(tmp_path / "agent"))
        await wait_for(online, 30)

        portal.send_signal(signal.SIGKILL)
        portal.wait(10)
        await asyncio.sleep(1.0)  # the agent notices and starts backing off
        assert agent.poll() is None
        restarted_at = time.monotonic()
        portal = processes.start("portal-2", *portal_args)
        await wait_ready(portal)
        before = (await get_installation(database, installation_id)).last_seen_at

        async def reconnected() -> bool:
            row = await get_installation(database, installation_id)
            return bool(row.online and row.last_seen_at and row.last_seen_at > before)

        await wait_for(reconnected, 40)
        back_after = time.monotonic() - restarted_at

        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        offline_after = await wait_for(offline, 10)
        (artifacts_dir / "control-restart.txt").write_text(
            f"agent back online {back_after:.1f} s after the portal restarted; "
            f"offline {offline_after:.1f} s after the agent was killed\n")
    finally:
        processes.stop_all()
        await database.dispose()
