"""Fixtures for the relay's browser-side tests: a portal stand-in and a relay over real TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .helpers import FakePortal


@pytest.fixture
async def portal() -> AsyncIterator[FakePortal]:
    async with FakePortal() as fake:
        yield fake


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"
