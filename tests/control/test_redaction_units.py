"""What ``control_commands`` keeps of a payload: no ticket, community or SNMPv3 key."""

from __future__ import annotations

import hashlib

from ewsgate.portal.control.redaction import REDACTED, redact


def test_secrets_are_removed_at_any_depth_and_tickets_kept_as_a_digest() -> None:
    ticket = "header.payload.signature"
    payload = {"session_id": "s1", "ticket": ticket,
               "identity": {"ip": "10.0.0.5", "snmp": {"version": "3", "community": "public",
                                                        "v3_user": "tech",
                                                        "v3_auth_key": "auth-secret",
                                                        "v3_priv_key": "priv-secret"}},
               "list": [{"password": "pw"}, {"token": ""}]}
    kept = redact(payload)
    assert kept["ticket"] == "sha256:" + hashlib.sha256(ticket.encode()).hexdigest()
    assert kept["identity"]["snmp"] == {"version": "3", "community": REDACTED,
                                        "v3_user": "tech", "v3_auth_key": REDACTED,
                                        "v3_priv_key": REDACTED}
    assert kept["list"] == [{"password": REDACTED}, {"token": ""}]
    assert kept["identity"]["ip"] == "10.0.0.5" and kept["session_id"] == "s1"
    assert payload["ticket"] == ticket  # the original (sent to the agent) is untouched


def test_non_secret_values_and_none_pass_through() -> None:
    assert redact(None) is None
    assert redact({"echo": [1, "two", None]}) == {"echo": [1, "two", None]}
