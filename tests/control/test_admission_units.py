"""The Connect token bucket: bursts pass, the rate holds, refusals hand out spread-out
reservations (no retry storm), and the agent reads the pause it is given."""

from __future__ import annotations

import pytest

from ewsgate.agent.control_client import retry_after_of
from ewsgate.portal.control.admission import MAX_RETRY_AFTER, AdmissionConfig, ConnectAdmission


def test_a_burst_passes_then_the_rate_holds() -> None:
    bucket = ConnectAdmission(AdmissionConfig(rate=10, burst=5), now=0.0)
    assert [bucket.decide(0.0).admitted for _ in range(6)] == [True] * 5 + [False]
    assert bucket.decide(0.1).admitted  # one token per 1/rate
    assert not bucket.decide(0.1).admitted
    admitted = sum(bucket.decide(1.0 + i / 1000).admitted for i in range(1000))
    assert admitted == 5 + 9  # the burst, then the rate: not the thousand callers


def test_refused_callers_are_given_distinct_slots_at_the_rate() -> None:
    bucket = ConnectAdmission(AdmissionConfig(rate=100, burst=1), now=0.0)
    assert bucket.decide(0.0).admitted
    pauses = [bucket.decide(0.0).retry_after for _ in range(500)]
    assert pauses == sorted(pauses) and len(set(pauses)) == 500
    assert pauses[0] == pytest.approx(0.01) and pauses[-1] == pytest.approx(5.0)
    # what the refused come back at is what the bucket admits: none is refused twice
    back = sorted(pauses)
    again = [bucket.decide(t).admitted for t in back]
    assert all(again)


def test_reservations_stop_at_the_maximum_pause() -> None:
    bucket = ConnectAdmission(AdmissionConfig(rate=1, burst=1), now=0.0)
    bucket.decide(0.0)
    pauses = [bucket.decide(0.0).retry_after for _ in range(200)]
    assert max(pauses) == MAX_RETRY_AFTER


def test_rate_zero_admits_everything_and_bad_settings_are_refused() -> None:
    bucket = ConnectAdmission(AdmissionConfig(rate=0), now=0.0)
    assert all(bucket.decide(0.0).admitted for _ in range(10_000))
    with pytest.raises(ValueError, match="0 \\(off\\) or positive"):
        AdmissionConfig(rate=-1)
    with pytest.raises(ValueError, match="burst"):
        AdmissionConfig(rate=5, burst=0)


def test_the_agent_reads_the_pause_from_the_status_details() -> None:
    assert retry_after_of("busy: admitting 200 streams/s; retry_after=2.5") == 2.5
    assert retry_after_of("retry_after=999") == 60.0
    assert retry_after_of("retry_after=soon") is None
    assert retry_after_of("other") is None and retry_after_of(None) is None
