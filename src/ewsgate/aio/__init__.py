"""asyncio adapters shared by the relay and the agent.

The protocol lives in :mod:`ewsgate.tunnel` (sans-I/O); this package gives it sockets:

* :mod:`.connection` -- :class:`TunnelConnection`, the one read -> feed -> dispatch loop of a
  tunnel connection, with write coalescing, back-pressure and the keepalive timer;
* :mod:`.streams` -- :class:`TunnelStream`, a stream that reads and writes like a socket;
* :mod:`.splice` -- joins a stream to a TCP/TLS connection without a coroutine per chunk;
* :mod:`.tls` -- the TLS contexts (relay listener, agent dialer, legacy devices);
* :mod:`.net` -- outbound TCP, directly or through an HTTP CONNECT proxy;
* :mod:`.errors` -- :class:`TunnelError` and the one place foreign exceptions are mapped.

Every TCP socket gets TCP_NODELAY: frames are flushed as soon as they are framed, so Nagle's
algorithm and delayed ACKs never add their 40 ms to a small request.
"""

from ewsgate.aio.connection import TunnelConnection
from ewsgate.aio.errors import (
    StreamRefusedError,
    StreamResetError,
    TunnelClosedError,
    TunnelError,
    map_exceptions,
)
from ewsgate.aio.streams import TunnelStream

__all__ = [
    "StreamRefusedError",
    "StreamResetError",
    "TunnelClosedError",
    "TunnelConnection",
    "TunnelError",
    "TunnelStream",
    "map_exceptions",
]
