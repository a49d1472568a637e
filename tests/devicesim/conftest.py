"""Fixtures for the simulated printer's tests: start a profile on loopback, close it after."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ewsgate.config import HostPort
from ewsgate.devicesim.device import RunningDevice, start_device

LOOPBACK = HostPort("127.0.0.1", 0)

StartDevice = Callable[..., Awaitable[RunningDevice]]


@pytest.fixture
async def device_factory() -> AsyncIterator[StartDevice]:
    """``await device_factory("hp", https=True)``: a device on free loopback ports."""
    started: list[RunningDevice] = []

    async def start(profile: str, *, http: bool = True, https: bool = False,
                    **kwargs: Any) -> RunningDevice:
        device = await start_device(profile, http=LOOPBACK if http else None,
                                    https=LOOPBACK if https else None, **kwargs)
        started.append(device)
        return device

    yield start
    for device in started:
        await device.close()
