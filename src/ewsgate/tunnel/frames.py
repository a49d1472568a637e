"""The wire format: frame layout, encoders and an incremental parser.

Every frame is a 10-byte header followed by ``length`` payload bytes (big-endian)::

     0                   1                   2                   3
    +-------------------------------------------------------------+
    |                     length (u32, payload only)              |
    +---------------+---------------+-----------------------------+
    |   type (u8)   |  flags (u8)   |   stream id (u32, 0 = conn) |
    +---------------+---------------+-----------------------------+
    |                     payload (length bytes)                  |

The parser keeps what it has not consumed in a :class:`FrameBuffer`. It reads a header and
checks the length against the limit *before* waiting for the payload. A control frame (at most
:data:`MAX_CONTROL_FRAME` bytes) is committed whole or rolled back to its start to wait for more
bytes -- the commit/rollback idea of wsproto's frame parser, for a simpler, length-prefixed
format. A DATA payload is handed on in pieces as it arrives, so the parser never holds more than
one control frame, whatever the DATA frame size. A DATA piece is not copied either: it may be a
view of the bytes fed last, and the receiver copies it out before the caller reuses its buffer.
Payload decoding per type is in ``parse_*``.
"""

from __future__ import annotations

import struct
from enum import IntEnum, IntFlag
from typing import NamedTuple

from ewsgate.textsafe import safe_text
from ewsgate.tunnel.errors import ErrorCode, RemoteProtocolError

__all__ = [
    "HEADER",
    "HELLO_MAGIC",
    "MAX_CONTROL_FRAME",
    "MAX_REASON",
    "PROTOCOL_VERSION",
    "Flag",
    "Frame",
    "FrameBuffer",
    "FrameParser",
    "FrameType",
    "Setting",
    "encode_frame",
    "encode_goaway",
    "encode_hello",
    "encode_open",
    "encode_reset",
    "parse_goaway",
    "parse_hello",
    "parse_open",
    "parse_reset",
]

HEADER = struct.Struct("!IBBI")
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
_GOAWAY = struct.Struct("!II")
_SETTING = struct.Struct("!HI")
_HELLO_HEAD = struct.Struct("!4sHH")

#: first bytes of every HELLO payload, so a stray TLS client is told apart from a tunnel peer
HELLO_MAGIC = b"EWST"
#: major version 1; the version is one u16 and peers must send the same one (no downgrade)
PROTOCOL_VERSION = 1
#: longest reason text (UTF-8 bytes) in RESET and GOAWAY frames
MAX_REASON = 512
#: longest credential in a HELLO (the tunnel ticket)
MAX_CREDENTIAL = 8192
_MAX_SETTINGS = 32


class FrameType(IntEnum):
    HELLO = 0  #: connection preface with version, settings and credential (stream 0)
    OPEN = 1  #: open stream; payload = port index (u16) + metadata
    ACCEPT = 2  #: the opened stream is connected; empty payload
    DATA = 3  #: stream bytes; flag END_STREAM half-closes
    WINDOW = 4  #: window increment (u32); stream 0 = connection window
    RESET = 5  #: abort stream; payload = error code (u32) + reason
    PING = 6  #: 8 opaque bytes; flag ACK on the answer (stream 0)
    GOAWAY = 7  #: no new streams; payload = last stream id, error code, reason (stream 0)


class Flag(IntFlag):
    NONE = 0
    END_STREAM = 0x1  #: on DATA: the sender's last frame on this stream
    ACK = 0x1  #: on PING: this is the answer


class Setting(IntEnum):
    """Settings a peer announces in its HELLO: limits that *it* enforces on what it receives."""

    INITIAL_STREAM_WINDOW = 1  #: bytes the peer may send on a new stream before a WINDOW
    CONNECTION_WINDOW = 2  #: bytes the peer may send on the whole connection before a WINDOW
    MAX_FRAME_SIZE = 3  #: largest payload this side accepts
    MAX_CONCURRENT_STREAMS = 4  #: most open streams the other side may open towards this side
    MAX_METADATA = 5  #: longest OPEN metadata this side accepts


class Frame(NamedTuple):
    """One parsed frame, or one piece of a DATA frame's payload.

    Control frames arrive whole. DATA payloads are handed over as they arrive, in pieces: the
    first piece has ``first`` set and ``length`` = the whole frame's payload length (so flow
    control is checked once, up front), the last has ``last`` set. A DATA payload is never
    buffered whole, so memory does not grow with the frame size.

    A named tuple, not a frozen dataclass: one is built per DATA piece, and a frozen
    dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost three times as much.
    """

    type: int
    flags: int
    stream_id: int
    #: ``bytes`` for a control frame; a DATA piece may be a view, valid until ``detach()``
    payload: bytes | memoryview
    length: int = 0
    first: bool = True
    last: bool = True


class FrameBuffer:
    """Received bytes not parsed yet, with a read position that can be committed or rolled back.

    Avoids copying in the common case: when everything was consumed, the next chunk becomes the
    buffer as it is, and pieces are sliced straight out of it (a piece that is a whole chunk is
    the chunk itself). Only a partial header or control frame is ever carried over and copied.
    """

    __slots__ = ("_data", "_mark", "_pos")

    def __init__(self) -> None:
        self._data: bytes | bytearray | memoryview = b""
        self._pos = 0
        self._mark = 0

    def __len__(self) -> int:
        return len(self._data) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes. A buffer passed in is read in place until :meth:`detach`."""
        if self._mark >= len(self._data):
            self._data = data if isinstance(data, bytes | memoryview) else memoryview(data)
        else:
            rest = bytearray(memoryview(self._data)[self._mark:])
            rest += data
            self._data = rest
        self._pos = self._mark = 0

    def detach(self) -> None:
        """Stop referring to the caller's buffer: copy what is left (at most a control frame)."""
        data = self._data
        if self._mark >= len(data):
            self._data = b""
        elif not isinstance(data, bytes):
            self._data = bytes(memoryview(data)[self._mark:])
        else:
            return
        self._pos = self._mark = 0

    def consume_exactly(self, size: int) -> memoryview | None:
        """The next ``size`` bytes, or None (position unchanged) when fewer are buffered."""
        end = self._pos + size
        if end > len(self._data):
            return None
        view = memoryview(self._data)[self._pos:end]
        self._pos = end
        return view

    def take_at_most(self, size: int) -> bytes | memoryview:
        """Up to ``size`` bytes, never copied: the buffered chunk itself when that is all of
        it, else a view of it. A view may point into the caller's buffer: it is valid only
        until :meth:`detach`, so whoever keeps it copies it first."""
        data, pos = self._data, self._pos
        end = min(pos + size, len(data))
        self._pos = end
        if pos == 0 and end == len(data) and isinstance(data, bytes):
            return data
        return memoryview(data)[pos:end]

    def commit(self) -> None:
        self._mark = self._pos

    def rollback(self) -> None:
        self._pos = self._mark


#: largest control frame (everything but DATA): a HELLO with its ticket fits comfortably
MAX_CONTROL_FRAME = 16 * 1024


class FrameParser:
    """Turns a byte stream into :class:`Frame` objects, enforcing the frame size limits."""

    __slots__ = ("_buffer", "_data_flags", "_data_left", "_data_length", "_data_sid",
                 "max_frame_size")

    def __init__(self, max_frame_size: int) -> None:
        self._buffer = FrameBuffer()
        self.max_frame_size = max_frame_size
        self._data_left = 0
        self._data_sid = 0
        self._data_flags = 0
        self._data_length = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer.feed(data)

    def detach(self) -> None:
        """Call when done with the bytes fed last: the caller may then reuse its buffer."""
        self._buffer.detach()

    def next_frame(self) -> Frame | None:
        """The next frame or DATA piece, or None; raises :class:`RemoteProtocolError`."""
        buf = self._buffer
        if self._data_left:
            piece = buf.take_at_most(self._data_left)
            if not piece:
                return None
            buf.commit()
            self._data_left -= len(piece)
            last = not self._data_left
            return Frame(FrameType.DATA, self._data_flags if last else 0, self._data_sid,
                         piece, self._data_length, False, last)
        head = buf.consume_exactly(HEADER.size)
        if head is None:
            return None
        length, ftype, flags, stream_id = HEADER.unpack(head)
        if stream_id > 0x7FFFFFFF:
            raise RemoteProtocolError(f"stream id {stream_id} uses the reserved top bit")
        if ftype == FrameType.DATA:
            if length > self.max_frame_size:
                raise RemoteProtocolError(
                    f"DATA frame of {length} bytes exceeds the maximum frame size "
                    f"{self.max_frame_size}", ErrorCode.FRAME_SIZE_ERROR)
            piece = buf.take_at_most(length)
            buf.commit()
            left = length - len(piece)
            if left:
                self._data_left, self._data_sid = left, stream_id
                self._data_flags, self._data_length = flags, length
            return Frame(ftype, flags if not left else 0, stream_id, piece, length, True,
                         not left)
        if length > MAX_CONTROL_FRAME:
            raise RemoteProtocolError(
                f"control frame of {length} bytes exceeds {MAX_CONTROL_FRAME}",
                ErrorCode.FRAME_SIZE_ERROR)
        payload = buf.consume_exactly(length)
        if payload is None:
            buf.rollback()
            return None
        buf.commit()
        return Frame(ftype, flags, stream_id, bytes(payload), length)


def encode_frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(len(payload), ftype, flags, stream_id) + payload


def encode_hello(settings: dict[int, int], credential: bytes) -> bytes:
    body = _HELLO_HEAD.pack(HELLO_MAGIC, PROTOCOL_VERSION, len(settings))
    body += b"".join(_SETTING.pack(key, value) for key, value in sorted(settings.items()))
    return encode_frame(FrameType.HELLO, 0, 0, body + credential)


def parse_hello(payload: bytes) -> tuple[int, dict[int, int], bytes]:
    """``(version, settings, credential)``; raises on a malformed HELLO."""
    if len(payload) < _HELLO_HEAD.size:
        raise RemoteProtocolError("HELLO too short", ErrorCode.FRAME_SIZE_ERROR)
    magic, version, count = _HELLO_HEAD.unpack_from(payload)
    if magic != HELLO_MAGIC:
        raise RemoteProtocolError("not an ewsgate tunnel peer (bad HELLO magic)")
    if count > _MAX_SETTINGS:
        raise RemoteProtocolError(f"HELLO carries {count} settings; at most {_MAX_SETTINGS}")
    end = _HELLO_HEAD.size + count * _SETTING.size
    if len(payload) < end:
        raise RemoteProtocolError("HELLO settings truncated", ErrorCode.FRAME_SIZE_ERROR)
    settings = dict(_SETTING.iter_unpack(payload[_HELLO_HEAD.size:end]))
    credential = payload[end:]
    if len(credential) > MAX_CREDENTIAL:
        raise RemoteProtocolError(f"HELLO credential over {MAX_CREDENTIAL} bytes",
                                  ErrorCode.METADATA_TOO_LARGE)
    return version, settings, credential


def encode_open(stream_id: int, port_index: int, metadata: bytes) -> bytes:
    return encode_frame(FrameType.OPEN, 0, stream_id, _U16.pack(port_index) + metadata)


def parse_open(payload: bytes, max_metadata: int) -> tuple[int, bytes]:
    if len(payload) < 2:
        raise RemoteProtocolError("OPEN without a port index", ErrorCode.FRAME_SIZE_ERROR)
    if len(payload) - 2 > max_metadata:
        raise RemoteProtocolError(
            f"OPEN metadata of {len(payload) - 2} bytes exceeds {max_metadata}",
            ErrorCode.METADATA_TOO_LARGE)
    return _U16.unpack_from(payload)[0], payload[2:]


def _reason_bytes(reason: str) -> bytes:
    return reason.encode("utf-8", "replace")[:MAX_REASON]


def _reason_text(data: bytes) -> str:
    if len(data) > MAX_REASON:
        raise RemoteProtocolError(f"reason text over {MAX_REASON} bytes",
                                  ErrorCode.METADATA_TOO_LARGE)
    # the peer chooses these bytes and they end up in logs: escaped (controls, ANSI)
    return safe_text(data, limit=MAX_REASON)


def encode_reset(stream_id: int, code: int, reason: str) -> bytes:
    return encode_frame(FrameType.RESET, 0, stream_id, _U32.pack(code) + _reason_bytes(reason))


def parse_reset(payload: bytes) -> tuple[int, str]:
    if len(payload) < 4:
        raise RemoteProtocolError("RESET without an error code", ErrorCode.FRAME_SIZE_ERROR)
    return _U32.unpack_from(payload)[0], _reason_text(payload[4:])


def encode_goaway(last_stream_id: int, code: int, reason: str) -> bytes:
    return encode_frame(FrameType.GOAWAY, 0, 0,
                        _GOAWAY.pack(last_stream_id, code) + _reason_bytes(reason))


def parse_goaway(payload: bytes) -> tuple[int, int, str]:
    if len(payload) < _GOAWAY.size:
        raise RemoteProtocolError("GOAWAY too short", ErrorCode.FRAME_SIZE_ERROR)
    last, code = _GOAWAY.unpack_from(payload)
    if last > 0x7FFFFFFF:
        raise RemoteProtocolError("GOAWAY last stream id uses the reserved top bit")
    return last, code, _reason_text(payload[_GOAWAY.size:])
