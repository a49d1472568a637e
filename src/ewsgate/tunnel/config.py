"""Limits and timers of one tunnel connection end, validated once (a frozen dataclass)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ewsgate.tunnel.budgets import Budget
from ewsgate.tunnel.frames import Setting

__all__ = ["MAX_WINDOW", "ProtocolConfig", "Role"]

# default abuse budgets (a frozen dataclass default must be a name, not a call)
_EARLY_RESETS = Budget(burst=128, per_second=32)
_CLOSED_FRAMES = Budget(burst=256, per_second=64)
_SMALL_WINDOWS = Budget(burst=256, per_second=64)
_EMPTY_DATA = Budget(burst=128, per_second=32)

#: the largest window a sender may ever hold (the same bound as HTTP/2)
MAX_WINDOW = 2**31 - 1


class Role(Enum):
    """Which end of the TCP connection this is. Only the LISTENER (the relay) opens streams."""

    DIALER = "dialer"  #: the agent: sends HELLO with its ticket first, serves streams
    LISTENER = "listener"  #: the relay: verifies the HELLO, answers HELLO, opens streams


@dataclass(frozen=True, kw_only=True, slots=True)
class ProtocolConfig:
    """What this end accepts from its peer, and its keepalive timers (seconds)."""

    #: receive window granted to each new stream: the most bytes buffered for one slow reader
    initial_stream_window: int = 1024 * 1024
    #: a fast reader's stream window may grow up to this
    max_stream_window: int = 16 * 1024 * 1024
    #: total window growth granted over all streams of the connection (the memory bound)
    window_growth_budget: int = 64 * 1024 * 1024
    #: receive window of the connection as a whole (credit is returned as frames arrive)
    connection_window: int = 16 * 1024 * 1024
    #: largest DATA payload accepted (and sent: the smaller of both ends' values is used)
    max_frame_size: int = 256 * 1024
    #: most streams the peer may have open towards us at once
    max_concurrent_streams: int = 256
    #: longest OPEN metadata accepted
    max_metadata: int = 1024
    #: refused OPENs in a row (over the stream limit) before the connection is closed as a flood
    max_refused_streams: int = 256
    #: PINGs answered between two ticks before the peer counts as flooding
    max_pings_per_tick: int = 64
    #: abuse budgets (see :mod:`ewsgate.tunnel.budgets`): the peer resets a stream it opened
    #: before we accepted it (rapid open+reset)
    early_resets: Budget = _EARLY_RESETS
    #: RESET/WINDOW/ACCEPT for streams no longer open, DATA after the peer's own FIN or RESET
    closed_frames: Budget = _CLOSED_FRAMES
    #: WINDOW increments below min(1024, window / 4) bytes
    small_windows: Budget = _SMALL_WINDOWS
    #: DATA frames with no payload and no END_STREAM
    empty_data: Budget = _EMPTY_DATA
    #: idle time before we send a PING
    keepalive_interval: float = 15.0
    #: an unanswered PING older than this means the peer is dead
    keepalive_timeout: float = 20.0

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.initial_stream_window <= MAX_WINDOW, "initial_stream_window"),
            (1024 <= self.connection_window <= MAX_WINDOW, "connection_window"),
            (self.initial_stream_window <= self.max_stream_window <= MAX_WINDOW,
             "max_stream_window"),
            (0 <= self.window_growth_budget <= MAX_WINDOW, "window_growth_budget"),
            (16 * 1024 <= self.max_frame_size <= 16 * 1024 * 1024, "max_frame_size"),
            (1 <= self.max_concurrent_streams <= 1 << 20, "max_concurrent_streams"),
            (0 <= self.max_metadata <= 64 * 1024, "max_metadata"),
            (self.max_refused_streams >= 1, "max_refused_streams"),
            (self.max_pings_per_tick >= 1, "max_pings_per_tick"),
            (self.keepalive_interval > 0, "keepalive_interval"),
            (self.keepalive_timeout > 0, "keepalive_timeout"),
        ]
        for ok, name in checks:
            if not ok:
                raise ValueError(f"ProtocolConfig.{name}={getattr(self, name)!r} is out of range;"
                                 " see docs/tunnel-protocol.md, section Limits")

    def budgets(self) -> dict[str, Budget]:
        """The abuse budgets by name (:data:`ewsgate.tunnel.budgets.BUDGET_NAMES`)."""
        return {"early_resets": self.early_resets, "closed_frames": self.closed_frames,
                "small_windows": self.small_windows, "empty_data": self.empty_data}

    def settings(self) -> dict[int, int]:
        """The HELLO settings announcing these limits to the peer."""
        return {
            Setting.INITIAL_STREAM_WINDOW: self.initial_stream_window,
            Setting.CONNECTION_WINDOW: self.connection_window,
            Setting.MAX_FRAME_SIZE: self.max_frame_size,
            Setting.MAX_CONCURRENT_STREAMS: self.max_concurrent_streams,
            Setting.MAX_METADATA: self.max_metadata,
        }
