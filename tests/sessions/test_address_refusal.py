"""A device recorded at an address the agent never contacts: the portal's real OpenSession
payload goes to the agent's real OpenSession handler (over a stand-in for the control hub),
whose address policy refuses before any packet; the session and its job fail with the
refusal's code and sentence."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from ewsgate.agent.address_policy import AddressPolicy, HostAddresses
from ewsgate.agent.control_client import CommandContext, CommandFailure
from ewsgate.agent.session_commands import session_handlers
from ewsgate.portal.control import CommandFailed
from ewsgate.portal.store.models import Device, Job
from sessions.rt_world import RtWorld, settle

pytestmark = pytest.mark.db


class NoTunnels:
    def __init__(self) -> None:
        self.opened: list[Any] = []

    async def open_session(self, spec: Any) -> Any:
        self.opened.append(spec)

    async def close_session(self, session_id: str, reason: str = "") -> bool:
        return False


def agent_hub(tunnels: NoTunnels, policy: AddressPolicy) -> Callable[..., Any]:
    handlers = session_handlers(tunnels, address_policy=policy)

    async def send_command(installation_id: int, kind: str,
                           payload: Mapping[str, Any] | None = None, *, timeout: float = 30.0,
                           on_progress: Callable[[Any], Any] | None = None) -> dict[str, Any]:
        ctx = CommandContext(id="c1", kind=kind, payload=dict(payload or {}),
                             deadline=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=timeout),
                             progress=lambda stage, detail: None)
        try:
            return await handlers[kind](ctx)
        except CommandFailure as exc:
            raise CommandFailed(str(exc), code=exc.code) from None

    return send_command


@pytest.mark.parametrize(("ip", "code", "sentence"), [
    ("169.254.169.254", "address.metadata",
     "refused: 169.254.169.254 is the cloud metadata endpoint; the agent never contacts it; "
     "check the device's recorded IP"),
    ("100.100.100.200", "address.metadata",
     "refused: 100.100.100.200 is the cloud metadata endpoint (Alibaba Cloud)"),
    ("10.9.0.1", "address.own_host",
     "refused: 10.9.0.1 is an address of the agent's own host"),
])
async def test_a_forbidden_device_address_fails_the_session_and_the_job_in_words(
        rt: RtWorld, ip: str, code: str, sentence: str) -> None:
    async with rt.db.transaction() as s:
        device = await s.get(Device, rt.device["on"])
        assert device is not None
        device.ip = ip
    tunnels = NoTunnels()
    host = HostAddresses(addresses=frozenset({ipaddress.ip_address("10.9.0.1")}))
    rt.hub.send_command = agent_hub(tunnels, AddressPolicy(host_addresses=lambda: host))  # type: ignore[method-assign]
    view = await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await settle(rt)
    got = await rt.sessions.get(await rt.actor("tech"), view.session_id)
    assert got.status == "failed" and got.reason.startswith(code), got.reason
    async with rt.db.transaction() as s:
        job = await s.get(Job, view.job_id)
        assert job is not None
    assert job.status == "failed" and sentence in job.error, job.error
    assert tunnels.opened == []
