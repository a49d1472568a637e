"""The portal process's wiring: ``--smtp-url`` reaches a worker that runs among the
portal's background services and delivers what a session queued; bad flags stop the start."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ewsgate.config import ConfigError
from ewsgate.portal.app import create_app
from ewsgate.portal.context import PortalConfig
from ewsgate.portal.notifications.contacts import set_contacts
from ewsgate.portal.notifications.runtime import worker_of
from notifications.receivers import LoopbackCA, SmtpReceiver
from sessions.rt_world import ISSUER, RtWorld, settle

pytestmark = pytest.mark.db


async def test_the_portals_worker_delivers_a_session_start(rt: RtWorld, tmp_path: Path) -> None:
    async with SmtpReceiver(LoopbackCA(), tls=False) as smtp:
        config = PortalConfig.from_values({
            "data_dir": tmp_path / "data", "database_url": rt.db.url, "public_url": ISSUER,
            "smtp_url": f"smtp://127.0.0.1:{smtp.port}?starttls=off",
            "smtp_from": "rt@dealer.example"})
        app = create_app(config, database=rt.db, clock=rt.clock, ui=False)
        worker = worker_of(app)
        assert worker in app.state.portal.background and set(worker.senders) == {"email",
                                                                                  "webhook"}
        worker.poll_interval = 0.05
        admin = await rt.actor("admin")
        async with rt.db.transaction() as s:
            await set_contacts(s, admin, rt.customer["A"], {"emails": ["sec@a.example"]},
                               clock=rt.clock)
        await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
        await settle(rt)
        await worker.start()
        try:
            for _ in range(200):  # bounded: at most 10 s
                if smtp.messages:
                    break
                await asyncio.sleep(0.05)
        finally:
            await worker.stop()
    [message] = smtp.messages
    assert message["To"] == "sec@a.example" and "opened Printer on" in message["Subject"]


@pytest.mark.parametrize(("values", "why"), [
    ({"smtp_url": "smtp://u:p@mail.example?starttls=off", "smtp_from": "a@b.example"},
     "in clear"),
    ({"smtp_from": "a@b.example"}, "--smtp-url is not"),
    ({"smtp_url": "smtps://mail.example"}, "--smtp-from is needed"),
])
def test_bad_smtp_flags_stop_the_portal_at_start(values: dict[str, str], why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        PortalConfig.from_values(values)
