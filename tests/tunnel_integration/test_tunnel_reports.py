"""The agent's report ledger (sans-I/O): rate-limited, nothing lost, and when to cut a relay."""

from __future__ import annotations

import pytest

from ewsgate.agent.tunnel_reports import MAX_DETAIL, ReportLedger, clean_detail


def test_reports_are_rate_limited_and_the_suppressed_ones_are_counted_not_lost() -> None:
    ledger = ReportLedger("s1", burst=3, interval=5.0, max_faults=10_000)
    sent = []
    for i in range(100):
        reports, cut = ledger.record("destination_refused", "DESTINATION_REFUSED",
                                     f"port index {i} is not configured", 10.0)
        assert cut is None
        sent += reports
    assert len(sent) == 3 and all(r.count == 1 for r in sent)
    later, _ = ledger.record("destination_refused", "DESTINATION_REFUSED", "port index 100",
                             15.0)  # one interval later: one more report, carrying the count
    assert len(later) == 1 and later[0].count == 98 and "100" in later[0].detail
    assert ledger.flush() == []
    assert sum(r.count for r in sent + later) == 101


def test_flush_sends_what_is_pending_at_the_end() -> None:
    ledger = ReportLedger("s1", burst=1, interval=60.0)
    ledger.record("stream_refused", "REFUSED_STREAM", "over 32", 0.0)
    ledger.record("stream_refused", "REFUSED_STREAM", "over 32", 0.1)
    ledger.record("stream_refused", "REFUSED_STREAM", "over 32", 0.2)
    [pending] = ledger.flush()
    assert pending.kind == "stream_refused" and pending.count == 2


def test_a_relay_that_keeps_violating_is_cut_once() -> None:
    ledger = ReportLedger("s1", burst=1, interval=60.0, max_violations=3)
    cuts = []
    reports_seen = []
    for when in (1.0, 2.0, 3.0, 4.0):
        reports, cut = ledger.record("protocol_violation", "ENHANCE_YOUR_CALM", "flood", when,
                                     fatal=True, budget="early_resets")
        reports_seen += reports
        cuts.append(cut)
    assert cuts[:2] == [None, None] and cuts[3] is None
    assert cuts[2] is not None and "3 tunnel connection(s) closed" in cuts[2]
    assert any(r.kind == "relay_cut" for r in reports_seen), "the cut is reported at once"


def test_stream_refusals_are_never_a_fault_but_destination_refusals_add_up() -> None:
    ledger = ReportLedger("s1", max_faults=5)
    for _ in range(50):
        assert ledger.record("stream_refused", "REFUSED_STREAM", "over", 0.0)[1] is None
    results = [ledger.record("destination_refused", "DESTINATION_REFUSED", "idx", 0.0)[1]
               for _ in range(5)]
    assert results[:4] == [None] * 4 and results[4] is not None


def test_peer_text_is_cleaned_and_capped() -> None:
    text = clean_detail("evil\r\nLog-Injection: yes\x1b[31m" + "x" * 5000)
    assert "\r" not in text and "\n" not in text and "\x1b" not in text
    assert len(text) == MAX_DETAIL
    with pytest.raises(ValueError, match="unknown"):
        ReportLedger("s").record("gossip", "X", "", 0.0)
