"""DemoStack's blocking steps run coroutines whether or not the caller's thread runs a loop."""

from __future__ import annotations

import asyncio
import threading

from ewsgate.demo import _run_to_completion


async def _where() -> tuple[str, bool]:
    await asyncio.sleep(0)
    return threading.current_thread().name, True


def test_without_a_running_loop_runs_here() -> None:
    name, ok = _run_to_completion(_where())
    assert ok and name == threading.current_thread().name


async def test_inside_a_running_loop_runs_on_a_worker_thread() -> None:
    # asyncio.run would raise "cannot be called from a running event loop" here
    name, ok = _run_to_completion(_where())
    assert ok and name.startswith("demo-run")
