"""Finished commands are not kept for ever: ``control_commands`` is pruned in the background.

A finished row (``ok``, ``failed``, ``refused``, ``timeout``, ``offline``...) is of use for a
while — someone looks at why a verification failed — and then only grows the table. Rows whose
``completed_at`` is older than the retention (default 7 days) are deleted every
``interval`` (default 10 minutes), in bounded batches. Pending and sent commands are never
pruned: their outcome is not known yet.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["CommandRetention", "PrunableRecords", "run_pruner"]

log = logging.getLogger(__name__)


class PrunableRecords(Protocol):
    async def prune_commands(self, older_than: dt.datetime) -> int: ...


@dataclass(frozen=True, slots=True)
class CommandRetention:
    """How long finished commands are kept, and how often the pruner runs."""

    keep: dt.timedelta = dt.timedelta(days=7)
    interval: float = 600.0

    def __post_init__(self) -> None:
        if self.keep <= dt.timedelta(0) or self.interval <= 0:
            raise ValueError("command retention and pruning interval must be positive")


async def run_pruner(records: PrunableRecords, retention: CommandRetention,
                     clock: Callable[[], dt.datetime]) -> None:
    """Prune every ``retention.interval`` seconds until cancelled (errors are logged)."""
    while True:
        try:
            removed = await records.prune_commands(clock() - retention.keep)
            if removed:
                log.info("pruned %d finished control commands older than %s", removed,
                         retention.keep)
        except Exception:
            log.exception("pruning control_commands failed; retrying later")
        await asyncio.sleep(retention.interval)
