"""The agent-side pieces without a network: backoff, the replay gate, the data directory."""

from __future__ import annotations

import datetime as dt
import os
import random
import stat

import pytest

from ewsgate import pki
from ewsgate.agent.control_client import Backoff, CommandGate
from ewsgate.agent.state import AgentIdentity, AgentState, StateError
from ewsgate.config import HostPort

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def test_backoff_grows_exponentially_with_jitter_and_is_capped_at_30_s():
    backoff = Backoff(0.5, 30.0, random.Random(7))
    delays = [backoff.next_delay() for _ in range(12)]
    for attempt, delay in enumerate(delays):
        ceiling = min(30.0, 0.5 * 2 ** attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 30.0 and delays[-1] >= 15.0
    assert len({round(d, 6) for d in delays[-4:]}) == 4  # jittered, not identical
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_backoff_rejects_nonsense():
    with pytest.raises(ValueError):
        Backoff(0, 30, random.Random())


def test_gate_refuses_replays_and_expired_commands_and_forgets_old_ids():
    gate = CommandGate()
    assert gate.admit("a", deadline_unix_ms=2_000, now_unix_ms=1_000) is None
    assert gate.admit("a", deadline_unix_ms=2_000, now_unix_ms=1_500) == "replayed_command"
    assert gate.admit("b", deadline_unix_ms=900, now_unix_ms=1_000) == "command_expired"
    assert gate.admit("", deadline_unix_ms=2_000, now_unix_ms=1_000) == "bad_command"
    # after its deadline an id is forgotten, but the deadline check still refuses it
    assert gate.admit("a", deadline_unix_ms=2_000, now_unix_ms=3_000) == "command_expired"
    assert "a" not in gate._seen


def test_gate_is_bounded():
    gate = CommandGate(capacity=3)
    for index in range(5):
        assert gate.admit(str(index), deadline_unix_ms=10_000, now_unix_ms=0) is None
    assert list(gate._seen) == ["2", "3", "4"]


def make_identity(ca: pki.CertificateAuthority, installation_id: str = "7") -> AgentIdentity:
    issued = ca.issue_installation_cert(installation_id, now=NOW)
    return AgentIdentity(installation_id=installation_id, key_pem=issued.key_pem,
                         cert_pem=issued.cert_pem, ca_pem=ca.cert_pem,
                         control_address=HostPort("portal.example", 8001),
                         server_name=pki.PORTAL_SERVER_NAME)


def test_state_round_trip_with_private_files(tmp_path):
    ca = pki.create_ca(now=NOW)
    identity = make_identity(ca)
    state = AgentState(tmp_path / "agent")
    assert not state.is_enrolled()
    state.save_enrolment(identity)
    assert state.load() == identity
    assert stat.S_IMODE(state.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.data_dir.stat().st_mode) == 0o700
    assert identity.renew_at() == identity.not_before + (identity.not_after
                                                         - identity.not_before) * 2 / 3


def test_state_finishes_an_interrupted_renewal(tmp_path):
    ca = pki.create_ca(now=NOW)
    state = AgentState(tmp_path / "agent")
    state.save_enrolment(make_identity(ca))
    renewed = make_identity(ca)
    # crash after the new key was renamed into place but before the certificate was
    (state.data_dir / "cert.pem.new").write_bytes(renewed.cert_pem)
    os.replace(tmp_path / "agent" / "key.pem", tmp_path / "agent" / "old.key")
    state.key_path.write_bytes(renewed.key_pem)
    assert state.load().cert_pem == renewed.cert_pem


def test_state_errors_say_what_to_do(tmp_path):
    state = AgentState(tmp_path / "nothing")
    with pytest.raises(StateError) as info:
        state.load()
    assert info.value.code == "agent.not_enrolled" and "ewsgate agent enroll" in str(info.value)
    ca = pki.create_ca(now=NOW)
    state = AgentState(tmp_path / "agent")
    state.save_enrolment(make_identity(ca))
    state.key_path.write_bytes(pki.key_to_pem(pki.generate_key()))
    with pytest.raises(StateError) as info:
        state.load()
    assert info.value.code == "agent.key_mismatch"
