"""Enrolment and the control stream through an HTTP CONNECT proxy with Basic credentials."""

from __future__ import annotations

import asyncio
import base64
import dataclasses

import pytest

from ewsgate.agent.enroll import EnrolError, EnrolOptions, enroll
from ewsgate.agent.proxy import ProxyConfig, resolve_proxy
from ewsgate.agent.state import AgentState
from ewsgate.config import HostPort

from .conftest import FAST_CLIENT, eventually, get_installation, new_installation, new_token
from .connect_proxy import ConnectProxy

pytestmark = [pytest.mark.integration, pytest.mark.db]


async def not_(awaitable):
    return not await awaitable


@pytest.fixture
async def proxy():
    server = await ConnectProxy().start()
    yield server
    await server.stop()


async def test_enrol_and_control_stream_go_through_the_proxy(portal, db, ca, tmp_path, proxy,
                                                             agents):
    installation_id = await new_installation(db)
    token = await new_token(db, ca, installation_id)
    config = ProxyConfig.from_url(proxy.url)
    assert config.password == "s3cret:pw"
    state = AgentState(tmp_path / "agent")
    await enroll(EnrolOptions(portal=HostPort("127.0.0.1", portal.enrol_port), token=token,
                              agent_version="test", proxy=config), state)
    expected_auth = "Basic " + base64.b64encode(b"site:s3cret:pw").decode()
    assert proxy.requests == [(f"CONNECT 127.0.0.1:{portal.enrol_port}", expected_auth)] * 2
    agent = agents(state, config=dataclasses.replace(FAST_CLIENT, proxy=config))
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    assert proxy.requests[-1] == (f"CONNECT 127.0.0.1:{portal.port}", expected_auth)
    assert proxy.tunnels == 3
    result = await portal.hub.send_command(installation_id, "Ping", {}, timeout=5)
    assert result["pong"] is True


async def test_wrong_proxy_credentials_keep_the_agent_offline(portal, enrol, agents, proxy):
    enrolled = await enrol()
    bad = ProxyConfig("127.0.0.1", proxy.port, "site", "wrong")
    agent = agents(enrolled.state, config=dataclasses.replace(FAST_CLIENT, proxy=bad))
    await eventually(lambda: len(proxy.requests) >= 2)
    assert not agent.client.connected.is_set()
    assert proxy.tunnels == 0
    assert not portal.hub.is_online(enrolled.installation_id)


async def test_enrol_with_wrong_proxy_credentials_says_what_to_do(portal, db, ca, tmp_path,
                                                                  proxy):
    installation_id = await new_installation(db)
    token = await new_token(db, ca, installation_id)
    with pytest.raises(EnrolError) as info:
        await enroll(EnrolOptions(portal=HostPort("127.0.0.1", portal.enrol_port), token=token,
                                  agent_version="t",
                                  proxy=ProxyConfig("127.0.0.1", proxy.port, "site", "no")),
                     AgentState(tmp_path / "a"))
    assert info.value.code == "enrol.unreachable" and "407" in str(info.value)


def test_proxy_resolution_flag_env_and_no_proxy():
    env = {"HTTPS_PROXY": "http://u:p@proxy.example:8080", "NO_PROXY": "localhost,.internal"}
    assert resolve_proxy(None, "portal.example", env) == ProxyConfig("proxy.example", 8080,
                                                                    "u", "p")
    assert resolve_proxy(None, "portal.internal", env) is None
    assert resolve_proxy(None, "localhost", env) is None
    assert resolve_proxy("http://other:3128", "localhost", env) == ProxyConfig("other", 3128)
    assert resolve_proxy(None, "portal.example", {}) is None
    with pytest.raises(ValueError):
        ProxyConfig.from_url("socks5://proxy:1080")
    assert "p" not in repr(ProxyConfig("h", 1, "u", "p")).replace("ProxyConfig", "")


async def test_silent_dead_path_is_noticed_by_both_ends(portal, enrol, agents, proxy, db):
    """No FIN, no RST: bytes just stop and the path stays down for a while. The portal marks the
    installation offline after three missed heartbeats; the agent notices on its side and
    reconnects by itself once the path is back."""
    enrolled = await enrol()
    config = ProxyConfig.from_url(proxy.url)
    agent = agents(enrolled.state, config=dataclasses.replace(FAST_CLIENT, proxy=config))
    await asyncio.wait_for(agent.client.connected.wait(), 10)
    await eventually(lambda: portal.hub.is_online(enrolled.installation_id))

    async def offline():
        return not (await get_installation(db, enrolled.installation_id)).online

    await eventually(lambda: not_(offline()), timeout=5)
    proxy.refuse_new = True
    proxy.freeze()
    loop = asyncio.get_running_loop()
    frozen_at = loop.time()
    await eventually(offline, timeout=10)
    assert loop.time() - frozen_at < 10
    assert not portal.hub.is_online(enrolled.installation_id)
    await eventually(lambda: not agent.client.connected.is_set())
    proxy.refuse_new = False
    await eventually(lambda: agent.client.connects >= 2 and agent.client.connected.is_set(),
                     timeout=15)
    assert proxy.tunnels >= 2
    assert (await portal.hub.send_command(enrolled.installation_id, "Ping", {},
                                          timeout=5))["pong"]


async def test_agent_process_takes_the_proxy_from_https_proxy(portal, enrol, proxy, tmp_path):
    """``ewsgate agent run`` as a process, the proxy (with Basic credentials) only in
    HTTPS_PROXY: the control stream goes through it."""
    import os
    import subprocess
    import sys

    enrolled = await enrol()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EWSGATE_") and k.lower() not in ("https_proxy", "http_proxy",
                                                                   "no_proxy")}
    env["HTTPS_PROXY"] = proxy.url
    log = (tmp_path / "agent.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "ewsgate", "agent", "run", "--data-dir",
                                str(enrolled.state.data_dir)], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        await eventually(lambda: portal.hub.is_online(enrolled.installation_id), timeout=30)
        expected_auth = "Basic " + base64.b64encode(b"site:s3cret:pw").decode()
        assert proxy.requests[-1] == (f"CONNECT 127.0.0.1:{portal.port}", expected_auth)
        assert proxy.tunnels == 1
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()
