"""The control server's gRPC settings that matter at scale (no server is started)."""

from __future__ import annotations

from ewsgate.portal.control.server import MAX_PENDING_CALLS, server_options


def test_a_reconnect_storm_of_10000_agents_is_queued_not_cancelled() -> None:
    # grpc's defaults (1000 soft, 3000 hard) cancel Connect calls that arrive faster than the
    # asyncio server picks them up; every cancelled agent then retries with a new handshake
    options = dict(server_options())
    assert MAX_PENDING_CALLS >= 10_000
    assert options["grpc.server.max_pending_requests"] == MAX_PENDING_CALLS
    assert options["grpc.server.max_pending_requests_hard_limit"] == MAX_PENDING_CALLS


def test_keepalive_and_message_limits_are_kept() -> None:
    options = dict(server_options())
    assert options["grpc.keepalive_time_ms"] == 10_000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.max_receive_message_length"] == 1 << 20
