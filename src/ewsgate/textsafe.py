"""Text from a peer, made safe to log and to store: escaped and capped.

A device, an agent, a relay or a tunnel peer chooses the bytes of a GOAWAY reason, an SNMP
value, an HTTP reason phrase or an error string. Written to a terminal or a log file as they
are, ANSI escape sequences repaint the operator's screen, a newline forges a log line and
bidirectional overrides make text read backwards; stored as they are, 10 kB of junk per
answer fills the job history. So every such text goes through :func:`safe_text` before it
reaches a log call or a stored detail:

* characters that are not printable (C0/C1 controls, DEL, format characters such as U+202E
  and zero-width spaces, separators other than the plain space, surrogates, unassigned code
  points) become ``\\xNN`` / ``\\uNNNN`` / ``\\UNNNNNNNN`` escapes, and a backslash becomes
  ``\\\\``, so an escape in the output always means the peer sent that character;
* the result is at most ``limit`` characters (default 500), ending in ``… [N more]`` when cut.

Bytes are decoded as UTF-8 with invalid bytes escaped. The work is bounded by ``limit``, not
by the size of the input.
"""

from __future__ import annotations

__all__ = ["DEFAULT_LIMIT", "safe_json", "safe_text"]

DEFAULT_LIMIT = 500
_MARK = "… [{} more]"


def _escape(char: str) -> str:
    if char == "\\":
        return "\\\\"
    if char == " " or char.isprintable():
        return char
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe_text(value: object, *, limit: int = DEFAULT_LIMIT) -> str:
    """``value`` (text, bytes or anything with a ``str``) escaped and cut to ``limit``
    characters; see the module docstring. ``None`` becomes ``""``."""
    if limit < 32:  # room for the "… [N more]" mark whatever N is
        raise ValueError("limit must be at least 32 characters")
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        text = raw[: limit * 4].decode("utf-8", errors="surrogateescape")
        hidden = len(raw) - min(len(raw), limit * 4)
    else:
        whole = value if isinstance(value, str) else str(value)
        text, hidden = whole[: limit + 1], max(0, len(whole) - limit - 1)
    out: list[str] = []
    size = 0
    for index, char in enumerate(text):
        piece = _escape(char)
        if size + len(piece) > limit:
            rest = len(text) - index + hidden
            mark = _MARK.format(rest)
            while out and size + len(mark) > limit:
                size -= len(out.pop())
                rest += 1
                mark = _MARK.format(rest)
            return "".join(out) + mark
        out.append(piece)
        size += len(piece)
    if hidden:
        mark = _MARK.format(hidden)
        while out and size + len(mark) > limit:
            size -= len(out.pop())
            hidden += 1
            mark = _MARK.format(hidden)
        return "".join(out) + mark
    return "".join(out)


def safe_json(value: object, *, limit: int = DEFAULT_LIMIT, depth: int = 8) -> object:
    """A JSON value from a peer with every string (keys too) passed through :func:`safe_text`;
    containers deeper than ``depth`` become ``None`` (numbers, booleans, null stay)."""
    if isinstance(value, str):
        return safe_text(value, limit=limit)
    if isinstance(value, dict):
        if depth <= 0:
            return None
        return {safe_text(key, limit=64): safe_json(item, limit=limit, depth=depth - 1)
                for key, item in value.items()}
    if isinstance(value, list):
        if depth <= 0:
            return None
        return [safe_json(item, limit=limit, depth=depth - 1) for item in value]
    return value
