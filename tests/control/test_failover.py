"""Real processes: two portal replicas on one PostgreSQL database; the agent is given both
addresses, and when the replica holding its stream is killed (``kill -9``) it is back on the
other within seconds, without waiting out its backoff. Two processes cannot share a SQLite
file as replicas, so this runs on PostgreSQL only (``EWSGATE_TEST_DATABASE_URL``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import time

import pytest

from ewsgate.portal.control.runtime import load_portal_ca
from ewsgate.portal.store.db import Database

from .conftest import TEST_URL_ENV, get_installation, new_installation, new_token
from .test_restart import HERE, Processes, free_port, wait_for, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.db]


async def test_agent_fails_over_to_the_other_replica_when_its_portal_is_killed(
        tmp_path, db: Database, artifacts_dir) -> None:
    if not os.environ.get(TEST_URL_ENV):
        pytest.skip("two portal replicas need a shared PostgreSQL database "
                    f"({TEST_URL_ENV}); a SQLite file is one process's")
    data = tmp_path / "portal"
    ca = load_portal_ca(data)  # both replicas load the same CA from the shared data dir
    installation_id = await new_installation(db)
    token = await new_token(db, ca, installation_id)
    ports = [(free_port(), free_port()) for _ in range(2)]
    processes = Processes(tmp_path)

    def replica(index: int):
        grpc_port, enrol_port = ports[index]
        return processes.start(f"portal-{index + 1}", str(HERE / "portal_process.py"), db.url,
                               str(data), f"127.0.0.1:{grpc_port}", f"127.0.0.1:{enrol_port}")

    try:
        first, second = replica(0), replica(1)
        await wait_ready(first)
        await wait_ready(second)
        enroll = processes.start("enroll", "-m", "ewsgate", "agent", "enroll", "--portal",
                                 f"127.0.0.1:{ports[0][1]}", "--token", token,
                                 "--data-dir", str(tmp_path / "agent"))
        assert await asyncio.to_thread(enroll.wait, 60) == 0
        addresses = ",".join(f"127.0.0.1:{grpc}" for grpc, _ in ports)
        agent = processes.start("agent", "-m", "ewsgate", "agent", "run",
                                "--data-dir", str(tmp_path / "agent"),
                                "--portal-addresses", addresses)

        async def online() -> bool:
            row = await get_installation(db, installation_id)
            return bool(row and row.online)

        await wait_for(online, 30)
        await asyncio.sleep(0.5)
        first.send_signal(signal.SIGKILL)  # the replica the agent dialled first
        first.wait(10)
        killed = dt.datetime.now(dt.UTC)
        killed_at = time.monotonic()

        async def on_the_other() -> bool:
            row = await get_installation(db, installation_id)
            return bool(row and row.online and row.last_seen_at and row.last_seen_at > killed)

        await wait_for(on_the_other, 20)
        took = time.monotonic() - killed_at
        assert agent.poll() is None
        assert took < 10, f"the agent took {took:.1f} s to reach the other replica"
        log = (tmp_path / "agent.log").read_text()
        assert f"127.0.0.1:{ports[0][0]}" in log and "to the next portal address" in log, log
        (artifacts_dir / "control-failover.txt").write_text(
            f"agent on the other replica {took:.1f} s after its portal was killed\n")
    finally:
        processes.stop_all()


async def test_agent_moves_to_the_next_replica_without_the_full_backoff(
        db: Database, ca, portal, enrol, agents) -> None:
    """In one process (any database): two control servers, the agent on the first; when it
    stops, the agent is on the second after a short jittered pause, although its backoff is
    long (a round only ends, and the full backoff only starts, when every address failed)."""
    from ewsgate.agent.control_client import ClientConfig
    from ewsgate.config import HostPort
    from ewsgate.portal.control import ControlServer, ControlServerConfig

    from .conftest import FAST_HUB, eventually, utc_now

    other = ControlServer(ControlServerConfig(listen="127.0.0.1:0", enrol_listen=None,
                                              hub=FAST_HUB), database=db, ca=ca, clock=utc_now)
    await other.start()
    try:
        enrolled = await enrol("agent")
        enrolled.state.save_control_addresses([HostPort("127.0.0.1", portal.port),
                                               HostPort("127.0.0.1", other.port)])
        slow = ClientConfig(agent_version="test", backoff_base=20.0, backoff_cap=60.0,
                            connect_timeout=5.0)
        running = agents(enrolled.state, config=slow)
        await eventually(lambda: portal.hub.online_ids(), 10)
        assert enrolled.installation_id in portal.hub.online_ids()
        loop = asyncio.get_running_loop()
        stopped_at = loop.time()
        await portal.stop(0)
        await eventually(lambda: enrolled.installation_id in other.hub.online_ids(), 10)
        took = loop.time() - stopped_at
        assert took < 10, took  # the full backoff would be 10..20 s
        assert running.client.failovers == 1
    finally:
        await other.stop(0.2)
