"""The webhook signature and the retry schedule: pure functions, no I/O."""

from __future__ import annotations

import json

import pytest

from ewsgate.portal.notifications.messages import email_text, webhook_body
from ewsgate.portal.notifications.outbox import RetryPolicy, backoff
from ewsgate.portal.notifications.signing import (
    SignatureError,
    new_secret,
    sign,
    signature_header,
    verify,
)

SECRET = "whsec_test-secret"
BODY = b'{"id":1,"type":"session_started"}'


def test_signature_round_trip_returns_the_signed_time() -> None:
    header = signature_header(SECRET, 1_800_000_000, BODY)
    assert header.startswith("t=1800000000,v1=")
    assert verify(SECRET, header, BODY, now=1_800_000_030) == 1_800_000_000


def test_signature_covers_the_timestamp_so_a_replay_with_a_new_time_fails() -> None:
    old = sign(SECRET, 1_800_000_000, BODY)
    forged = f"t=1800000600,v1={old}"  # an attacker re-dates a captured delivery
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify(SECRET, forged, BODY, now=1_800_000_600)


@pytest.mark.parametrize(("secret", "body", "now", "why"), [
    ("whsec_other", BODY, 1_800_000_000, "no v1 signature matches"),
    (SECRET, BODY + b" ", 1_800_000_000, "no v1 signature matches"),
    (SECRET, BODY, 1_800_000_301, "more than the 300 s tolerated"),
])
def test_a_wrong_secret_an_altered_body_or_an_old_delivery_is_refused(
        secret: str, body: bytes, now: int, why: str) -> None:
    header = signature_header(SECRET, 1_800_000_000, BODY)
    with pytest.raises(SignatureError, match=why):
        verify(secret, header, body, now=now)


@pytest.mark.parametrize("header", ["", "v1=abc", "t=1800000000", "t=soon,v1=abc"])
def test_a_malformed_header_is_refused_with_a_reason(header: str) -> None:
    with pytest.raises(SignatureError):
        verify(SECRET, header, BODY, now=1_800_000_000)


def test_a_second_v1_during_secret_rotation_is_accepted() -> None:
    good = sign(SECRET, 1_800_000_000, BODY)
    header = f"t=1800000000,v1={'0' * 64},v1={good}"
    assert verify(SECRET, header, BODY, now=1_800_000_000) == 1_800_000_000


def test_new_secrets_are_long_and_distinct() -> None:
    secrets = {new_secret() for _ in range(20)}
    assert len(secrets) == 20
    assert all(s.startswith("whsec_") and len(s) >= 48 for s in secrets)


def test_backoff_doubles_is_capped_and_jittered_within_half_to_full() -> None:
    policy = RetryPolicy(base_seconds=10, cap_seconds=100)
    assert [backoff(n, policy, lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 80, 100]
    assert [backoff(n, policy, lambda: 0.0) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 40, 50]
    assert 5 < backoff(1, policy, lambda: 0.5) < 10


def test_every_event_kind_has_an_email_text_naming_the_facts() -> None:
    data = {"user_email": "tech@example.com", "device_name": "Printer 3F",
            "customer_name": "ACME", "approver_email": "boss@acme.example",
            "session_id": "abc", "reason": "toner error", "ticket": "INC-7"}
    from ewsgate.portal.notifications.events import EVENT_KINDS

    for kind in EVENT_KINDS:
        text = email_text(kind, data)
        assert text.subject and "{" not in text.subject and "{" not in text.body
        assert "ACME" in text.body
    started = email_text("session_started", data)
    assert "tech@example.com" in started.subject and "Printer 3F" in started.subject
    assert "Reason: toner error" in started.body and "Ticket: INC-7" in started.body


def test_webhook_body_is_compact_json_with_id_and_type() -> None:
    body = webhook_body(7, "session_ended", {"device_name": "Impressora ç"})
    assert json.loads(body) == {"id": 7, "type": "session_ended",
                                "data": {"device_name": "Impressora ç"}}
    assert b" " not in body.replace(b"Impressora ", b"")


@pytest.mark.parametrize(("address", "allowed"), [
    ("8.8.8.8", True), ("2606:4700::1111", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("192.168.0.9", False), ("169.254.169.254", False),
    ("::1", False), ("fe80::1%eth0", False), ("fd00::5", False), ("::ffff:127.0.0.1", False),
    ("0.0.0.0", False), ("224.0.0.1", False), ("100.64.0.1", False),
])
def test_webhooks_go_to_public_addresses_only(address: str, allowed: bool) -> None:
    from ewsgate.portal.notifications.webhook_transport import address_allowed

    assert address_allowed(address) is allowed


def test_an_operator_may_allow_an_internal_network() -> None:
    from ewsgate.portal.notifications.webhook_transport import address_allowed, parse_networks

    networks = parse_networks("10.20.0.0/16, fd00::/8")
    assert address_allowed("10.20.3.4", networks) and address_allowed("fd00::5", networks)
    assert not address_allowed("10.21.0.1", networks)
    with pytest.raises(ValueError):
        parse_networks("10.0.0.0/33")
