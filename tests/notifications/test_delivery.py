"""Session events reach a real SMTP server (aiosmtpd, STARTTLS, AUTH) and a real HTTPS
webhook receiver; failures are retried with backoff and stay visible; nothing blocks a session.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from sqlalchemy import select

from ewsgate.portal.notifications.contacts import set_contacts
from ewsgate.portal.notifications.outbox import RetryPolicy, notify
from ewsgate.portal.notifications.senders import DELIVERY_HEADER, EmailSender, WebhookSender
from ewsgate.portal.notifications.settings import SmtpSettings
from ewsgate.portal.notifications.signing import SIGNATURE_HEADER, SignatureError, verify
from ewsgate.portal.notifications.webhook_transport import parse_networks
from ewsgate.portal.notifications.worker import NotificationWorker
from ewsgate.portal.services import devices as device_service
from ewsgate.portal.store.models import Notification
from notifications.receivers import LoopbackCA, SmtpReceiver, WebhookReceiver
from sessions.rt_world import RtWorld, settle

pytestmark = pytest.mark.db

CA = LoopbackCA()
SENDER = "rt@dealer.example"


async def _contacts(rt: RtWorld, customer: str = "A", **values: Any) -> dict[str, Any]:
    admin = await rt.actor("admin")
    async with rt.db.transaction() as s:
        view = await set_contacts(s, admin, rt.customer[customer], values, clock=rt.clock)
    return {"secret": view.webhook_secret, "emails": view.emails}


async def _rows(rt: RtWorld) -> list[Notification]:
    async with rt.db.transaction() as s:
        return list((await s.scalars(select(Notification).order_by(Notification.id))).all())


def _smtp(port: int, **kw: Any) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, sender=SENDER, username="notify",
                        password="s3cret pass", **kw)


async def _start_session(rt: RtWorld) -> str:
    view = await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await settle(rt)
    assert (await rt.sessions.get(await rt.actor("tech"), view.session_id)).status == "ready"
    return view.session_id


async def test_contacts_get_start_and_end_emails_over_starttls(rt: RtWorld) -> None:
    await _contacts(rt, emails=["Sec@Customer-A.example", "it@customer-a.example"])
    async with SmtpReceiver(CA) as smtp:
        worker = NotificationWorker(
            rt.db, {"email": EmailSender(_smtp(smtp.port), tls_context=CA.client_context())},
            clock=rt.clock)
        session_id = await _start_session(rt)
        assert await worker.run_once() == 2
        assert sorted(m["To"] for m in smtp.messages) == ["it@customer-a.example",
                                                          "sec@customer-a.example"]
        started = smtp.messages[0]
        assert started["From"] == SENDER
        assert started["Subject"] == "Remote Technician: tech@example.com opened Printer on"
        body = started.get_content()
        assert "Customer A" in body and session_id in body and "Ends at the latest" in body
        assert smtp.logins  # AUTH happened, after STARTTLS (the server requires it)

        await rt.sessions.end(await rt.actor("tech"), session_id)
        await settle(rt)
        assert await worker.run_once() == 2
        ended = smtp.messages[-1]
        assert ended["Subject"] == "Remote Technician: the session on Printer on ended"
        assert "How it ended: ended by its owner" in ended.get_content()
        assert ended[DELIVERY_HEADER] is not None
        delivery = ended[DELIVERY_HEADER]
        assert ended["Message-ID"] == f"<ewsgate-notification-{delivery}@dealer.example>"
    rows = await _rows(rt)
    assert [(r.kind, r.status, r.attempts) for r in rows] == [
        ("session_started", "delivered", 1)] * 2 + [("session_ended", "delivered", 1)] * 2
    assert worker.counters["delivered"] == 4


async def test_a_server_without_starttls_gets_neither_password_nor_message(rt: RtWorld) -> None:
    """A man in the middle who strips STARTTLS from the server's answer must not learn the
    password or the message: STARTTLS is required, not opportunistic."""
    seen: list[bytes] = []

    async def plain_server(reader: Any, writer: Any) -> None:
        writer.write(b"220 mitm ESMTP\r\n")
        while line := await reader.readline():
            seen.append(line)
            if line.upper().startswith((b"EHLO", b"HELO")):
                writer.write(b"250-mitm\r\n250 AUTH PLAIN LOGIN\r\n")
            elif line.upper().startswith(b"QUIT"):
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 OK\r\n")
            await writer.drain()
        writer.close()

    import asyncio

    server = await asyncio.start_server(plain_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await _contacts(rt, emails=["sec@customer-a.example"])
        worker = NotificationWorker(
            rt.db, {"email": EmailSender(_smtp(port), tls_context=CA.client_context())},
            clock=rt.clock)
        await _start_session(rt)
        await worker.run_once()
    finally:
        server.close()
        await server.wait_closed()
    assert not any(line.upper().startswith((b"AUTH", b"MAIL", b"DATA")) for line in seen)
    [row] = await _rows(rt)
    assert row.status == "pending" and row.attempts == 1
    assert "STARTTLS" in (row.last_error or "") or "starttls" in (row.last_error or "").lower()


async def test_webhook_is_signed_retried_with_backoff_and_then_delivered(rt: RtWorld) -> None:
    async with WebhookReceiver(CA, statuses=[503, 200]) as hook:
        secret = (await _contacts(rt, webhook_url=hook.url))["secret"]
        assert secret
        worker = NotificationWorker(
            rt.db, {"webhook": WebhookSender(tls_context=CA.client_context(),
                                             allowed_networks=parse_networks("127.0.0.0/8"),
                                             wall_clock=lambda: rt.clock().timestamp())},
            clock=rt.clock, policy=RetryPolicy(base_seconds=10), rng=lambda: 1.0)
        try:
            session_id = await _start_session(rt)
            assert await worker.run_once() == 1
            [row] = await _rows(rt)
            assert (row.status, row.attempts) == ("pending", 1)
            assert "answered 503" in (row.last_error or "")
            assert await worker.run_once() == 0  # not due before its backoff
            rt.clock.advance(9)
            assert await worker.run_once() == 0
            rt.clock.advance(1)
            assert await worker.run_once() == 1
        finally:
            await worker.stop()
    [row] = await _rows(rt)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 2, None)
    first, second = hook.received
    assert first.headers[DELIVERY_HEADER.lower()] == second.headers[DELIVERY_HEADER.lower()]
    assert second.method == "POST" and second.target == "/hooks/ewsgate"
    now = int(rt.clock().timestamp())
    signed_at = verify(secret, second.headers[SIGNATURE_HEADER.lower()], second.body, now=now)
    assert signed_at == now
    event = json.loads(second.body)
    assert event["type"] == "session_started" and event["id"] == row.id
    assert event["data"]["session_id"] == session_id
    assert event["data"]["customer_name"] == "Customer A"
    with pytest.raises(SignatureError):  # what a receiver does with a tampered body
        verify(secret, second.headers[SIGNATURE_HEADER.lower()],
               second.body.replace(b"Customer A", b"Customer B"), now=now)


async def test_a_dead_notifier_neither_blocks_nor_loses_events_and_failures_show(
        rt: RtWorld, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    await _contacts(rt, emails=["sec@customer-a.example"])
    worker = NotificationWorker(
        rt.db, {"email": EmailSender(_smtp(dead_port), tls_context=CA.client_context())},
        clock=rt.clock, policy=RetryPolicy(max_attempts=3, base_seconds=5), rng=lambda: 1.0)
    session_id = await _start_session(rt)
    await rt.sessions.end(await rt.actor("tech"), session_id)  # not held up by the dead server
    await settle(rt)
    assert (await rt.sessions.get(await rt.actor("tech"), session_id)).status == "ended"
    for _ in range(3):
        assert await worker.run_once() == 2
        rt.clock.advance(60)
    assert await worker.run_once() == 0
    rows = await _rows(rt)
    assert [(r.kind, r.status, r.attempts) for r in rows] == [
        ("session_started", "failed", 3), ("session_ended", "failed", 3)]
    assert all("unreachable" in (r.last_error or "") for r in rows)
    assert worker.counters["failed"] == 2 and worker.counters["retried"] == 4
    gave_up = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(gave_up) == 2 and all("failed for good after 3 attempt(s)" in m
                                     and "unreachable" in m for m in gave_up)


async def test_events_exist_exactly_when_the_change_commits(rt: RtWorld) -> None:
    await _contacts(rt, emails=["sec@customer-a.example"])
    with pytest.raises(RuntimeError):
        async with rt.db.transaction() as s:
            await notify(s, "session_started", dealer_id=rt.dealer,
                         customer_id=rt.customer["A"], data={}, now=rt.clock())
            raise RuntimeError("the session change fails")
    assert await _rows(rt) == []
    # a session that fails before it opens was never started: nothing to tell
    rt.hub.script = [("fail", "identity_mismatch", "the MAC address differs")]
    view = await rt.sessions.create(await rt.actor("tech"), rt.device["on"])
    await settle(rt)
    await rt.sessions.sweep()
    assert (await rt.sessions.get(await rt.actor("tech"), view.session_id)).status == "failed"
    assert await _rows(rt) == []


async def test_switching_the_device_off_ends_the_session_with_one_event(rt: RtWorld) -> None:
    await _contacts(rt, emails=["sec@customer-a.example"])
    await _start_session(rt)
    configurer = await rt.actor("configurer")
    async with rt.db.transaction() as s:
        await device_service.set_remote_technician(s, configurer, rt.device["on"], False,
                                                   clock=rt.clock)
    await rt.sessions.sweep()
    await rt.sessions.sweep()  # a second pass (or another replica) adds nothing
    await settle(rt)
    kinds = [r.kind for r in await _rows(rt)]
    assert kinds == ["session_started", "session_ended"]


async def test_parent_contacts_and_webhook_hear_of_child_customer_sessions(
        rt: RtWorld) -> None:
    """Contacts of a customer higher in the tree hear of the sessions below it."""
    from ewsgate.portal.store.models import Customer

    async with rt.db.transaction() as s:
        child = await s.get(Customer, rt.customer["A"])
        assert child is not None
        child.parent_id = rt.customer["B"]
    await _contacts(rt, "B", emails=["group-sec@holding.example"])
    await _contacts(rt, "A", emails=["sec@customer-a.example", "group-sec@holding.example"])
    await _start_session(rt)
    targets = sorted(r.target for r in await _rows(rt))
    assert targets == ["group-sec@holding.example", "sec@customer-a.example"]


async def test_a_session_request_is_mailed_to_the_customers_approvers_only(
        rt: RtWorld) -> None:
    """``session_requested`` goes to the approvers in scope (not another customer's
    administrator, not an inactive one), and not to the plain contacts."""
    from ewsgate.portal.notifications.recipients import approver_emails
    from ewsgate.portal.store.models import User

    await _contacts(rt, emails=["sec@customer-a.example"])
    async with rt.db.transaction() as s:
        inactive = User(dealer_id=rt.dealer, email="gone@example.com", name="gone",
                        password_hash="x", active=False, created_at=rt.clock())
        s.add(inactive)
        await s.flush()
        from ewsgate.portal.store.models import RoleAssignment

        s.add(RoleAssignment(user_id=inactive.id, role="administrator", dealer_id=rt.dealer,
                             customer_id=None, created_at=rt.clock()))
        await s.flush()
        approvers = await approver_emails(s, dealer_id=rt.dealer, customer_id=rt.customer["A"])
        # the dealer's administrator and customer A's Customer Approver; not customer B's
        # approver, not the inactive administrator
        assert approvers == ["admin@example.com", "approvera@example.com"]
        await notify(s, "session_requested", dealer_id=rt.dealer, customer_id=rt.customer["A"],
                     data={"user_email": "tech@example.com", "device_name": "Printer on",
                           "reason": "paper jam on tray 2", "ticket": "INC-42"},
                     now=rt.clock(), approver_emails=approvers)
    async with SmtpReceiver(CA) as smtp:
        worker = NotificationWorker(
            rt.db, {"email": EmailSender(_smtp(smtp.port), tls_context=CA.client_context())},
            clock=rt.clock)
        assert await worker.run_once() == 2
    assert sorted(m["To"] for m in smtp.messages) == approvers
    message = smtp.messages[0]
    assert message["Subject"] == "Remote Technician: tech@example.com asks to open Printer on"
    body = message.get_content()
    assert "Reason: paper jam on tray 2" in body and "Ticket: INC-42" in body
    assert "waits for your answer" in body


async def test_a_webhook_to_an_internal_address_is_never_dialled(rt: RtWorld) -> None:
    """A customer's administrator points the webhook at the portal's own network (SSRF):
    the portal refuses to connect, by the address it would dial, and says why."""
    async with WebhookReceiver(CA) as hook:
        await _contacts(rt, webhook_url=f"https://localhost:{hook.port}/internal")
        worker = NotificationWorker(
            rt.db, {"webhook": WebhookSender(tls_context=CA.client_context())},
            clock=rt.clock)
        try:
            await _start_session(rt)
            assert await worker.run_once() == 1
        finally:
            await worker.stop()
    assert hook.received == []
    [row] = await _rows(rt)
    assert row.status == "pending" and "internal address" in (row.last_error or "")
    assert "--webhook-allow-network" in (row.last_error or "")
