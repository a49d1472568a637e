"""The asyncio side of one proxied WebSocket: two read loops feeding a :class:`WebSocketBridge`.

One task reads the browser, one reads the device; each feeds what it read into the bridge and
writes what the bridge has for either side (one lock per side keeps frames in order). The
WebSocket is over when the bridge says both close handshakes are done, or ``grace`` seconds
after the first close when a side does not answer, or when a side's transport fails.

:meth:`WebSocketProxy.end` is how the session's end reaches an open WebSocket: close 1008 to
both sides, then at most ``grace`` seconds for their answers before the caller aborts the
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from ewsgate.relay.upstream import ByteStream
from ewsgate.relay.ws_bridge import Side, WebSocketBridge, WebSocketStats
from ewsgate.textsafe import safe_text

__all__ = ["WebSocketProxy"]


def _cause(exc: BaseException) -> str:
    """A transport failure in words for the log (its text may be the peer's: made safe)."""
    text = safe_text(str(exc), limit=160)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class WebSocketProxy:
    """Frames between a browser connection and a device stream, after both handshakes."""

    def __init__(self, *, read_browser: Callable[[int], Awaitable[bytes]],
                 write_browser: Callable[[bytes], Awaitable[None]], device: ByteStream,
                 read_size: int, grace: float) -> None:
        self.bridge = WebSocketBridge()
        self._read = {Side.BROWSER: read_browser, Side.DEVICE: device.read}
        self._write = {Side.BROWSER: write_browser, Side.DEVICE: device.write}
        self._locks = {Side.BROWSER: asyncio.Lock(), Side.DEVICE: asyncio.Lock()}
        self._read_size = read_size
        self._grace = grace
        self._progress = asyncio.Event()
        self._finished = asyncio.Event()

    @property
    def stats(self) -> WebSocketStats:
        return self.bridge.stats

    async def run(self, browser_tail: bytes, device_tail: bytes) -> WebSocketStats:
        """Relay frames until the WebSocket is over; the stats say how it went."""
        try:
            for side, tail in ((Side.BROWSER, browser_tail), (Side.DEVICE, device_tail)):
                if tail:
                    await self._feed(side, tail)
            tasks = [asyncio.create_task(self._pump(side)) for side in Side]
            try:
                await self._wait_until_over(tasks)
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(BaseException):
                        await task
        finally:
            self._finished.set()
        return self.bridge.stats

    async def _wait_until_over(self, tasks: list[asyncio.Task[None]]) -> None:
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while not self.bridge.done() and not all(task.done() for task in tasks):
            self._progress.clear()
            if self.bridge.stats.close_code is not None and deadline is None:
                deadline = loop.time() + self._grace
            if deadline is None:
                await self._progress.wait()
                continue
            try:
                async with asyncio.timeout_at(deadline):
                    await self._progress.wait()
            except TimeoutError:
                return  # a side did not answer the close in time

    async def _pump(self, side: Side) -> None:
        try:
            while self.bridge.reading(side):
                cause = None
                try:
                    data = await self._read[side](self._read_size)
                except Exception as exc:  # any transport failure: socket, TLS, tunnel
                    data, cause = b"", _cause(exc)
                await self._feed(side, data or None, cause=cause)
                if not data:
                    return
        finally:
            self._progress.set()

    async def _feed(self, side: Side, data: bytes | None, *, cause: str | None = None) -> None:
        self.bridge.receive(side, data, cause=cause)
        await self._flush()
        if self.bridge.stats.close_code is not None:
            # the run loop cares only about the closing (its grace) and the end: no wake-up
            # per message
            self._progress.set()

    async def _flush(self) -> None:
        for side in Side:
            if not self.bridge.pending(side):
                # never wait for a side's lock with nothing to write to it: a read loop
                # blocked behind the other direction's write would stop reading, and a
                # device that writes before it reads would then never drain
                continue
            async with self._locks[side]:
                data = self.bridge.data_to_send(side)
                if not data:
                    continue
                try:
                    await self._write[side](data)
                except Exception as exc:  # any transport failure: socket, TLS, tunnel
                    failed, cause = side, _cause(exc)
                else:
                    continue
            # that side's transport is gone: as if it had disconnected
            self.bridge.receive(failed, None, cause=cause)
            return await self._flush()

    async def end(self, reason: str) -> None:
        """Close both sides with 1008 and wait (at most ``grace``) for the WebSocket to end."""
        self.bridge.end(reason)
        with contextlib.suppress(Exception):
            await self._flush()
        self._progress.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._grace):
                await self._finished.wait()
