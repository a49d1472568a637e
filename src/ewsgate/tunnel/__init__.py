"""The tunnel protocol: many streams over one connection, sans-I/O.

This package contains no networking code, no event loop and no clock: it turns received bytes
into events and method calls into bytes to send (the h11/h2/wsproto model). The asyncio
adapters live in :mod:`ewsgate.aio`; the wire format is in ``docs/tunnel-protocol.md``.

::

    relay (LISTENER)                                     agent (DIALER)
        |  <------------- HELLO v1, settings, ticket ---------  |
        |  --------------- HELLO v1, settings ---------------->  |   (or GOAWAY TICKET_REFUSED)
        |  --------------- OPEN  #1 port_index=0 ------------->  |   agent dials device port 0
        |  <-------------- ACCEPT #1 -------------------------  |
        |  <====== DATA #1 / WINDOW #1 (both ways) ==========>  |
        |  --------------- DATA #1 END_STREAM ---------------->  |   half-close
        |  <-------------- RESET #1 CANCEL -------------------  |   or abort with a code
        |  <------------------ PING / PING ACK --------------->  |   keepalive
        |  ------------------- GOAWAY ------------------------>  |   no new streams

Modules: :mod:`.frames` (layout, encoders, parser), :mod:`.state` (transition tables),
:mod:`.connection` (one end: the public API), built on :mod:`.receiving` (the receive path)
and :mod:`.base` (stream table, windows, helpers); :mod:`.events`, :mod:`.errors`,
:mod:`.config`, :mod:`.credential` (the HELLO credential), :mod:`.budgets` (what a flooding
peer may cost us before it gets GOAWAY ``ENHANCE_YOUR_CALM``).
"""

from ewsgate.tunnel.budgets import BUDGET_NAMES, Budget
from ewsgate.tunnel.config import ProtocolConfig, Role
from ewsgate.tunnel.connection import Connection
from ewsgate.tunnel.errors import (
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from ewsgate.tunnel.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    GoawayReceived,
    HelloReceived,
    PingAcknowledged,
    StreamAccepted,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
)
from ewsgate.tunnel.state import ConnectionState, StreamState

__all__ = [
    "BUDGET_NAMES",
    "Budget",
    "Connection",
    "ConnectionState",
    "ConnectionTerminated",
    "DataReceived",
    "ErrorCode",
    "Event",
    "GoawayReceived",
    "HelloReceived",
    "LocalProtocolError",
    "PingAcknowledged",
    "ProtocolConfig",
    "ProtocolError",
    "RemoteProtocolError",
    "Role",
    "StreamAccepted",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
    "StreamState",
    "WindowUpdated",
]
