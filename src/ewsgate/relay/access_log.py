"""The Remote Technician Log on the relay: every request recorded, spooled, shipped, never lost.

Theory of operation::

    proxy ──record()──▶ spool segment (append-only JSON lines, O_APPEND, one write per entry)
                           │   fsync'd in batches (every ``fsync_interval`` s)
                           ▼
                        shipper ──POST batch──▶ portal (dedups on (session_id, seq))
                           │ on 2xx: cursor advanced (atomic rename + fsync)
                           ▼
                        fully shipped, closed segments deleted

- Each entry gets the next **sequence number of its session** (1, 2, 3 ...). Numbers survive a
  restart: on start the relay reads the ``seq.json`` snapshot (written before a segment is
  deleted) and every remaining segment, and continues after the highest number seen, so a
  restarted relay never reuses a number the portal has already stored.
- An entry is one ``os.write`` of one line to a file opened with ``O_APPEND``: once ``record``
  returns, the line is in the kernel and survives ``kill -9`` of the relay; ``fsync`` (batched)
  makes it survive a power cut too. A torn last line (power cut mid-write) is cut off at start.
- Shipping reads from the **cursor** (segment number + byte offset of the first unshipped line).
  The cursor moves only after the portal answered 2xx, so a crash between the POST and the
  cursor write re-ships that batch after restart; the portal's (session, seq) deduplication
  turns that into no duplicate. Failures are retried with capped exponential backoff.

The portal side of the contract (endpoint, authentication, body) is in ``docs/relay.md``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from ewsgate.relay.log_redaction import log_detail, log_url

__all__ = [
    "AccessEntry",
    "AccessLog",
    "LogShipper",
    "PortalLogShipper",
    "ShipError",
    "redact_url",
]

LOG_BATCHES_PATH = "/api/v1/relay/log-batches"

#: the relay's own paths, whose query carries one-time OAuth secrets
_RELAY_PATH_PREFIX = "/.ewsgate/"
#: query parameters whose values never reach the log on the relay's own paths
_SECRET_PARAMETERS = frozenset({"code", "state"})
REDACTED = "\u2026"
#: one encoder for every entry (``json.dumps`` with options builds a new one per call)
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def redact_url(url: str) -> str:
    """``url`` with the OAuth ``code`` and ``state`` values on the relay's own paths redacted.

    The callback ``/.ewsgate/callback?code=…&state=…`` carries a one-time authorization code and
    the state bound to the PKCE verifier; the log is read by people who must not be able to
    replay either, so the values become ``…`` and the parameter names stay (so the log still
    shows that a callback carried them). Device URLs are left as they are here;
    :meth:`AccessLog.record` applies :func:`ewsgate.relay.log_redaction.log_url`, which also
    redacts secrets in device URLs, escapes control characters and marks a cut.
    """
    path, mark, query = url.partition("?")
    if not mark or not path.startswith(_RELAY_PATH_PREFIX):
        return url
    parts = []
    for part in query.split("&"):
        name, equals, _value = part.partition("=")
        parts.append(f"{name}={REDACTED}" if equals and name in _SECRET_PARAMETERS else part)
    return f"{path}?{'&'.join(parts)}"


@dataclass(frozen=True, slots=True)
class AccessEntry:
    """One request as the Remote Technician Log shows it."""

    session_id: str
    #: per-session sequence number, from 1; (session_id, seq) is unique forever
    seq: int
    #: when the request arrived, epoch seconds (relay clock)
    time: float
    #: the portal user (e-mail) the session cookie names; None before sign-in
    user: str | None
    method: str
    #: the request target as the browser sent it (path and query), secrets redacted, control
    #: characters escaped, cut at 2048 characters with a ``…[+N bytes]`` marker
    url: str
    #: the status sent to the browser; None if none was sent (connection dropped)
    status: int | None
    #: request body bytes received from the browser
    bytes_in: int
    #: response body bytes sent to the browser
    bytes_out: int
    duration_ms: int
    #: ``ok``, ``refused``, ``auth``, ``ended``, ``error`` or ``aborted``
    outcome: str
    #: a code or a short explanation for anything but ``ok``
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


class ShipError(Exception):
    """The portal did not take a batch; it will be retried."""

    code = "log_ship_failed"


class LogShipper(Protocol):
    """Delivers a batch of entries to the portal; raises :class:`ShipError` on failure."""

    async def ship(self, entries: Sequence[dict[str, Any]]) -> None: ...


class PortalLogShipper:
    """POSTs batches to the portal's log-batch endpoint with the relay's credentials."""

    def __init__(self, portal_url: str, relay_id: str, relay_secret: str, *,
                 verify: Any = True, timeout: float = 10.0) -> None:
        self.url = portal_url.rstrip("/") + LOG_BATCHES_PATH
        self.relay_id = relay_id
        token = base64.b64encode(f"{relay_id}:{relay_secret}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}"}
        self._client = httpx.AsyncClient(verify=verify, timeout=timeout)

    async def ship(self, entries: Sequence[dict[str, Any]]) -> None:
        try:
            response = await self._client.post(
                self.url, json={"relay_id": self.relay_id, "entries": list(entries)},
                headers=self._headers)
        except httpx.HTTPError as exc:
            raise ShipError(f"cannot reach the portal at {self.url}: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise ShipError(f"the portal answered {response.status_code} to a log batch: "
                            f"{response.text[:300]}")

    async def aclose(self) -> None:
        await self._client.aclose()


def _segment_name(number: int) -> str:
    return f"segment-{number:08d}.jsonl"


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class AccessLog:
    """The spool and its shipper. ``record`` is synchronous and cheap; ``run`` ships."""

    def __init__(self, directory: Path, shipper: LogShipper | None, *,
                 fsync_interval: float = 0.2, ship_interval: float = 0.5,
                 batch_size: int = 200, segment_bytes: int = 4 * 1024 * 1024,
                 max_backoff: float = 30.0) -> None:
        self.directory = directory
        self.shipper = shipper
        self.fsync_interval = fsync_interval
        self.ship_interval = ship_interval
        self.batch_size = batch_size
        self.segment_bytes = segment_bytes
        self.max_backoff = max_backoff
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._cursor_path = directory / "shipped.json"
        self._seq_path = directory / "seq.json"
        self._next_seq: dict[str, int] = {}
        self._dirty = False
        self._wakeup = asyncio.Event()
        self.shipped_count = 0
        self.last_error: str | None = None
        self._recover()

    # -- recovery ------------------------------------------------------------------------

    def _segments(self) -> list[int]:
        numbers = []
        for path in self.directory.glob("segment-*.jsonl"):
            with contextlib.suppress(ValueError):
                numbers.append(int(path.stem.split("-", 1)[1]))
        return sorted(numbers)

    def _recover(self) -> None:
        if self._seq_path.exists():
            self._next_seq = {str(k): int(v) for k, v in
                              json.loads(self._seq_path.read_text("utf-8")).items()}
        segments = self._segments()
        for number in segments:
            path = self.directory / _segment_name(number)
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                # a torn final line (power cut mid-write): it was never a complete entry
                cut = data.rfind(b"\n") + 1
                with path.open("r+b") as handle:
                    handle.truncate(cut)
                data = data[:cut]
            for line in data.splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    entry = json.loads(line)
                    sid, seq = str(entry["session_id"]), int(entry["seq"])
                    self._next_seq[sid] = max(self._next_seq.get(sid, 1), seq + 1)
        if self._cursor_path.exists():
            cursor = json.loads(self._cursor_path.read_text("utf-8"))
            self._cursor = (int(cursor["segment"]), int(cursor["offset"]))
        else:
            self._cursor = (segments[0] if segments else 1, 0)
        self._segment = segments[-1] if segments else max(1, self._cursor[0])
        self._open_segment(self._segment)

    def _open_segment(self, number: int) -> None:
        self._segment = number
        self._fd = os.open(self.directory / _segment_name(number),
                           os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size

    # -- writing -------------------------------------------------------------------------

    def record(self, *, session_id: str, time: float, user: str | None, method: str, url: str,
               status: int | None, bytes_in: int, bytes_out: int, duration_ms: int,
               outcome: str, detail: str | None = None) -> AccessEntry:
        """Append one entry to the spool (survives ``kill -9`` once this returns)."""
        seq = self._next_seq.get(session_id, 1)
        self._next_seq[session_id] = seq + 1
        entry = AccessEntry(session_id=session_id, seq=seq, time=round(time, 3), user=user,
                            method=method[:16], url=log_url(url), status=status,
                            bytes_in=bytes_in, bytes_out=bytes_out, duration_ms=duration_ms,
                            outcome=outcome, detail=log_detail(detail))
        line = _ENCODER.encode(entry.to_json()).encode("utf-8") + b"\n"
        os.write(self._fd, line)
        self._size += len(line)
        self._dirty = True
        if self._size >= self.segment_bytes:
            self._rotate()
        self._wakeup.set()
        return entry

    def _rotate(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        self._dirty = False
        self._open_segment(self._segment + 1)

    def sync(self) -> None:
        """fsync the open segment if anything was written since the last sync."""
        if self._dirty:
            self._dirty = False
            os.fsync(self._fd)

    # -- shipping ------------------------------------------------------------------------

    def _read_batch(self) -> tuple[list[dict[str, Any]], tuple[int, int]]:
        """Up to ``batch_size`` unshipped entries and the cursor just after them."""
        segment, offset = self._cursor
        entries: list[dict[str, Any]] = []
        while len(entries) < self.batch_size:
            path = self.directory / _segment_name(segment)
            if not path.exists():
                if segment >= self._segment:
                    break
                segment, offset = segment + 1, 0
                continue
            with path.open("rb") as handle:
                handle.seek(offset)
                while len(entries) < self.batch_size:
                    line = handle.readline()
                    if not line.endswith(b"\n"):
                        break
                    offset += len(line)
                    with contextlib.suppress(ValueError):
                        entries.append(json.loads(line))
                at_end = handle.read(1) == b""
            if len(entries) >= self.batch_size or segment >= self._segment or not at_end:
                break
            segment, offset = segment + 1, 0
        return entries, (segment, offset)

    def _advance(self, cursor: tuple[int, int]) -> None:
        self._cursor = cursor
        _write_json_atomic(self._cursor_path, {"segment": cursor[0], "offset": cursor[1]})
        old = [n for n in self._segments() if n < cursor[0]]
        if old:
            # the seq snapshot must outlive the entries it summarises
            _write_json_atomic(self._seq_path, self._next_seq)
            for number in old:
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / _segment_name(number)).unlink()

    def pending(self) -> bool:
        """True if some recorded entry has not been shipped yet."""
        entries, _ = self._read_batch()
        return bool(entries)

    async def ship_once(self) -> int:
        """Ship one batch; returns how many entries the portal took (0 if none pending)."""
        if self.shipper is None:
            return 0
        entries, cursor = self._read_batch()
        if not entries:
            return 0
        self.sync()
        await self.shipper.ship(entries)
        self._advance(cursor)
        self.shipped_count += len(entries)
        return len(entries)

    async def run(self) -> None:
        """Background task: fsync in batches and ship with retry until cancelled."""
        backoff = 0.5
        last_sync = asyncio.get_running_loop().time()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.ship_interval)
            self._wakeup.clear()
            now = asyncio.get_running_loop().time()
            if now - last_sync >= self.fsync_interval:
                self.sync()
                last_sync = now
            try:
                while await self.ship_once():
                    pass
                backoff = 0.5
                self.last_error = None
            except ShipError as exc:
                self.last_error = str(exc)
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.max_backoff)

    async def drain(self, within: float = 5.0) -> bool:
        """Try to ship everything now (shutdown); True if nothing is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            try:
                if not await self.ship_once():
                    return True
            except ShipError as exc:
                self.last_error = str(exc)
                await asyncio.sleep(0.2)
        return not self.pending()

    def close(self) -> None:
        self.sync()
        with contextlib.suppress(OSError):
            os.close(self._fd)
