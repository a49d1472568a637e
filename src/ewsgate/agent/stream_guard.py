"""What the agent spends on a relay's streams: device connections, and dials for nothing.

A relay opens a stream and the agent dials the device. A hostile or broken relay could make
that cost the device a TCP connection per frame pair (10,000 OPEN+RESET pairs once made an
agent open 10,000 connections to a printer in 7.5 s). Two rules:

* **Never dial for a stream that is already reset.** :func:`dial_unless_reset` looks at the
  stream's state right before the connect, and races the connect against the stream's end: a
  RESET that arrives while the TCP (or TLS) handshake is under way cancels it, and a
  connection that completed anyway is aborted before a byte of the stream reaches it.
* **At most** ``limit`` **device connections per session at once** (:class:`DeviceSlots`,
  ``--max-device-connections``, default 32). A stream over the limit is refused with RESET
  ``REFUSED_STREAM`` and a reason naming the limit; the relay may retry it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ewsgate.aio.splice import SpliceProtocol
from ewsgate.aio.streams import TunnelStream

__all__ = ["DEFAULT_MAX_DEVICE_CONNECTIONS", "DeviceSlots", "dial_unless_reset"]

DEFAULT_MAX_DEVICE_CONNECTIONS = 32


class DeviceSlots:
    """A counter of the device connections one session holds (taken before the dial)."""

    def __init__(self, limit: int = DEFAULT_MAX_DEVICE_CONNECTIONS) -> None:
        if not 1 <= limit <= 4096:
            raise ValueError(f"max device connections {limit}: must be 1..4096")
        self.limit = limit
        self.in_use = 0
        #: streams refused because every slot was taken (for the report to the portal)
        self.refused = 0

    def take(self) -> bool:
        """Take a slot; False (and counted) when all ``limit`` are in use."""
        if self.in_use >= self.limit:
            self.refused += 1
            return False
        self.in_use += 1
        return True

    def release(self) -> None:
        self.in_use = max(0, self.in_use - 1)

    def refusal(self) -> str:
        return (f"the agent already holds {self.limit} device connections for this session "
                "(--max-device-connections); retry when one has closed")


async def dial_unless_reset(stream: TunnelStream,
                            dial: Callable[[TunnelStream], Awaitable[SpliceProtocol]],
                            ) -> SpliceProtocol | None:
    """``dial(stream)``, unless the stream is (or becomes) reset first; then None.

    Exceptions of ``dial`` propagate when the stream is still alive.
    """
    if stream.error is not None:
        return None
    connecting = asyncio.ensure_future(dial(stream))
    ended = asyncio.ensure_future(stream.wait_closed())
    try:
        await asyncio.wait((connecting, ended), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        connecting.cancel()
        raise
    finally:
        ended.cancel()
    if not connecting.done():  # the stream ended during the connect: abandon it
        connecting.add_done_callback(_abort_if_connected)
        connecting.cancel()
        return None
    splice = connecting.result()  # raises the dial's error
    if stream.error is not None:
        _abort(splice)
        return None
    return splice


def _abort_if_connected(done: asyncio.Future[SpliceProtocol]) -> None:
    if not done.cancelled() and done.exception() is None:
        _abort(done.result())


def _abort(splice: SpliceProtocol) -> None:
    if splice.transport is not None:
        splice.transport.abort()
