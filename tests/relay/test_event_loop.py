"""The relay process runs on uvloop when it is installed (less CPU per TLS record)."""

from __future__ import annotations

import asyncio

import pytest

from ewsgate.relay.main import _loop_factory


def test_the_relay_runs_on_uvloop_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    factory = _loop_factory()
    assert factory is uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
