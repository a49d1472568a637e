"""The Remote Technician Log on the relay: every request recorded, spooled, shipped, never lost.

Theory of operation::

    proxy ──begin()───▶ spool segment (append-only JSON lines, O_APPEND)   before forwarding
          ──record()──▶   "     "     (the completion, same seq)          before the last byte
                           │   fsync'd in batches (every ``fsync_interval`` s, or each entry)
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
- **An audit log, not a best-effort log** (auditd's ``disk_full_action``): a line is written
  whole or not at all (short writes are looped; a write that fails half-way is truncated back,
  so no torn line swallows the next entry) and a session's sequence number is committed only
  once its line is written. When a write fails (disk full, read-only, I/O error) the log is
  *unavailable*: :class:`AuditLogUnavailable` is raised, the proxy fails closed (the response
  the log could not record is not delivered: 503 "the audit log is unavailable", and no new
  sign-in starts), one ERROR line says why, ``write_failures`` counts it, and the next write
  is the probe: it recovers by itself when the disk does.
- **Begin and completion.** A forwarded request is spooled as a ``pending`` entry before it
  goes to the device and completed (same seq, the real outcome) before its response's last
  bytes leave. The portal merges the two on (session, seq). A begin whose completion never came
  (relay ``kill -9`` mid-request) is completed on the next start as ``error`` /
  ``relay_stopped``; when both are in one batch only the completion is shipped.
- **fsync policy**: ``fsync_interval`` seconds (default 0.2: an entry survives ``kill -9`` of
  the relay at once, a power cut after at most that long); 0 syncs every entry before the
  response is delivered.
- Shipping reads from the **cursor** (segment number + byte offset of the first unshipped line).
  The cursor moves only after the portal answered 2xx, so a crash between the POST and the
  cursor write re-ships that batch after restart; the portal's (session, seq) deduplication
  turns that into no duplicate. Failures are retried with capped exponential backoff. The
  shipping task is supervised: any exception is logged, backed off and retried; it never ends
  quietly. A cursor that cannot be saved (read-only spool) is kept in memory: shipping goes on,
  and after a restart the portal's deduplication absorbs the re-shipped entries.

The portal side of the contract (endpoint, authentication, body) is in ``docs/relay.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from time import monotonic as _monotonic
from typing import Any

from ewsgate.relay.log_redaction import log_detail, log_url
from ewsgate.relay.log_shipper import (
    LOG_BATCHES_PATH,
    LogShipper,
    PortalLogShipper,
    ShipError,
)

__all__ = [
    "LOG_BATCHES_PATH",
    "PENDING",
    "AccessEntry",
    "AccessLog",
    "AuditLogUnavailable",
    "LogShipper",
    "PortalLogShipper",
    "ShipError",
    "redact_url",
]

log = logging.getLogger(__name__)

#: entries kept in memory while the spool is unavailable, at most
MAX_DEFERRED = 10_000
#: the outcome of a begin record: forwarded, completion not recorded (yet)
PENDING = "pending"
#: the detail of a begin record (what the job log shows until the completion arrives)
IN_FLIGHT = ("in_flight: forwarded to the device, no completion recorded yet (if it stays so, "
             "the relay stopped mid-request)")
#: the completion written on start for a begin whose completion never came
RELAY_STOPPED = ("relay_stopped: the relay stopped before this request completed; what the "
                 "browser received is unknown")

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
    #: ``ok``, ``refused``, ``auth``, ``ended``, ``error``, ``client_gone`` or ``pending`` (a
    #: begin record, completed later under the same seq)
    outcome: str
    #: a code or a short explanation for anything but ``ok``
    detail: str | None = None
    #: the browser's address (IP) as the relay's socket saw it; left out of the JSON when
    #: unknown
    client: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        if out["client"] is None:
            del out["client"]
        return out


class AuditLogUnavailable(Exception):
    """The spool cannot take an entry (disk full, read-only, I/O error): fail closed."""

    code = "audit_log_unavailable"


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
    """The spool and its shipper. ``begin``/``record`` are synchronous and cheap; ``run`` ships.

    ``begin`` and ``record`` raise :class:`AuditLogUnavailable` when the entry could not be
    written; nothing of a failed entry stays in the spool and its sequence number is not used.
    """

    def __init__(self, directory: Path, shipper: LogShipper | None, *,
                 fsync_interval: float = 0.2, ship_interval: float = 0.5,
                 batch_size: int = 200, segment_bytes: int = 4 * 1024 * 1024,
                 max_backoff: float = 30.0, hold_pending: float = 2.0) -> None:
        if fsync_interval < 0:
            raise ValueError("fsync_interval must be 0 (every entry) or a positive duration")
        self.directory = directory
        self.shipper = shipper
        self.fsync_interval = fsync_interval
        self.ship_interval = ship_interval
        self.batch_size = batch_size
        self.segment_bytes = segment_bytes
        self.max_backoff = max_backoff
        self.hold_pending = hold_pending
        #: when each begin still waiting for its completion was written (monotonic)
        self._begun_at: dict[tuple[str, int], float] = {}
        self._held = False
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._cursor_path = directory / "shipped.json"
        self._seq_path = directory / "seq.json"
        self._next_seq: dict[str, int] = {}
        self._dirty = False
        self._wakeup = asyncio.Event()
        self.shipped_count = 0
        self.last_error: str | None = None
        #: why the spool is unavailable (None while it takes entries)
        self.write_error: str | None = None
        #: metrics: entries written, writes that failed, shipping rounds that raised
        self.written_count = 0
        self.write_failures = 0
        self.ship_failures = 0
        #: the cursor could not be saved; it is kept in memory and saved at the next chance
        self._cursor_unsaved = False
        #: entries the spool could not take, waiting in memory (see :meth:`defer`)
        self._deferred: list[bytes] = []
        self.deferred_dropped = 0
        self._recover()

    @property
    def available(self) -> bool:
        """False after a failed write, until a write succeeds again."""
        return self.write_error is None

    def metrics(self) -> dict[str, Any]:
        """Counters for monitoring (also logged when the spool fails or recovers)."""
        return {"available": self.available, "write_error": self.write_error,
                "written": self.written_count, "write_failures": self.write_failures,
                "shipped": self.shipped_count, "ship_failures": self.ship_failures,
                "ship_error": self.last_error, "waiting_in_memory": len(self._deferred),
                "dropped": self.deferred_dropped}

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
        #: begins seen without their completion: (session, seq) → the begin entry
        open_begins: dict[tuple[str, int], dict[str, Any]] = {}
        for number in segments:
            path = self.directory / _segment_name(number)
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                # a torn final line (power cut mid-write): it was never a complete entry
                cut = data.rfind(b"\n") + 1
                # read-only: _open_segment cuts it before the next write
                with contextlib.suppress(OSError), path.open("r+b") as handle:
                    handle.truncate(cut)
                data = data[:cut]
            for line in data.splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    entry = json.loads(line)
                    sid, seq = str(entry["session_id"]), int(entry["seq"])
                    self._next_seq[sid] = max(self._next_seq.get(sid, 1), seq + 1)
                    if entry.get("outcome") == PENDING:
                        open_begins[(sid, seq)] = entry
                    else:
                        open_begins.pop((sid, seq), None)
        if self._cursor_path.exists():
            cursor = json.loads(self._cursor_path.read_text("utf-8"))
            self._cursor = (int(cursor["segment"]), int(cursor["offset"]))
        else:
            self._cursor = (segments[0] if segments else 1, 0)
        self._segment = segments[-1] if segments else max(1, self._cursor[0])
        self._fd = -1
        self._size = 0
        try:
            self._open_segment(self._segment)
        except OSError as exc:
            self._failed(exc)  # starts unavailable; the first write is the probe
        try:
            for entry in open_begins.values():
                # the relay stopped between forwarding and completing: say so, truthfully
                self._append(_ENCODER.encode({
                    **entry, "status": None, "outcome": "error",
                    "detail": RELAY_STOPPED}).encode("utf-8") + b"\n")
        except AuditLogUnavailable:
            pass  # they stay pending in the spool; the next start completes them
        if open_begins:
            log.warning("access log: %d request(s) were in flight when the relay stopped; "
                        "logged as error/relay_stopped", len(open_begins))

    def _open_segment(self, number: int) -> None:
        path = self.directory / _segment_name(number)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        size = os.fstat(fd).st_size
        if size:
            # a torn tail (a failed write whose truncation failed too) is cut before appending
            with path.open("rb") as handle:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    handle.seek(0)
                    whole = handle.read().rfind(b"\n") + 1
                    try:
                        os.ftruncate(fd, whole)
                    except OSError:
                        os.close(fd)
                        raise
                    size = whole
        self._segment = number
        self._fd = fd
        self._size = size

    # -- writing -------------------------------------------------------------------------

    def begin(self, *, session_id: str, time: float, user: str | None, method: str,
              url: str, bytes_in: int = 0, client: str | None = None) -> int:
        """Spool a request about to be forwarded (outcome ``pending``); returns its seq.

        Complete it with :meth:`record` passing ``seq``. Raises :class:`AuditLogUnavailable`
        if it could not be written: then the request must not be forwarded.
        """
        return self.record(session_id=session_id, time=time, user=user, method=method, url=url,
                           status=None, bytes_in=bytes_in, bytes_out=0, duration_ms=0,
                           outcome=PENDING, detail=IN_FLIGHT, client=client).seq

    def record(self, *, session_id: str, time: float, user: str | None, method: str, url: str,
               status: int | None, bytes_in: int, bytes_out: int, duration_ms: int,
               outcome: str, detail: str | None = None, seq: int | None = None,
               client: str | None = None) -> AccessEntry:
        """Append one entry to the spool (survives ``kill -9`` once this returns).

        ``seq`` completes the entry :meth:`begin` returned; without it the entry takes the
        session's next number. Raises :class:`AuditLogUnavailable` if it was not written.
        """
        fresh = seq is None
        if seq is None:
            seq = self._next_seq.get(session_id, 1)
        entry = AccessEntry(session_id=session_id, seq=seq, time=round(time, 3), user=user,
                            method=method[:16], url=log_url(url), status=status,
                            bytes_in=bytes_in, bytes_out=bytes_out, duration_ms=duration_ms,
                            outcome=outcome, detail=log_detail(detail),
                            client=log_detail(client[:64]) if client else None)
        self._append(_ENCODER.encode(entry.to_json()).encode("utf-8") + b"\n")
        if outcome == PENDING:
            self._begun_at[(session_id, seq)] = _monotonic()
        else:
            self._begun_at.pop((session_id, seq), None)
        if fresh:
            # committed only now: a failed write leaves no line and uses no number
            self._next_seq[session_id] = max(self._next_seq.get(session_id, 1), seq + 1)
        return entry

    def defer(self, **fields: Any) -> None:
        """Keep an entry the spool could not take in memory; it is written (before anything
        newer) as soon as a write succeeds again. Takes :meth:`record`'s arguments."""
        seq = fields.pop("seq", None)
        sid = str(fields["session_id"])
        if seq is not None:
            self._begun_at.pop((sid, seq), None)
        if seq is None:
            seq = self._next_seq.get(sid, 1)
            self._next_seq[sid] = seq + 1
        entry = AccessEntry(
            session_id=sid, seq=seq, time=round(float(fields["time"]), 3), user=fields["user"],
            method=str(fields["method"])[:16], url=log_url(str(fields["url"])),
            status=fields["status"], bytes_in=fields["bytes_in"],
            bytes_out=fields["bytes_out"], duration_ms=fields["duration_ms"],
            outcome=fields["outcome"],
            detail=log_detail(str(fields["detail"])) if fields.get("detail") else None,
            client=log_detail(str(fields["client"])[:64]) if fields.get("client") else None)
        if len(self._deferred) >= MAX_DEFERRED:
            self.deferred_dropped += 1
            log.error("access log: %d entries are waiting for the spool; dropping the entry "
                      "for %s seq %d", len(self._deferred), sid, seq)
            return
        self._deferred.append(_ENCODER.encode(entry.to_json()).encode("utf-8") + b"\n")

    def write_deferred(self) -> bool:
        """Try to write the entries kept in memory (the recovery probe); True if none is left."""
        if not self._deferred:
            return True
        try:
            self._append(b"")
        except AuditLogUnavailable:
            return False
        return not self._deferred

    def _append(self, line: bytes) -> None:
        """Write ``line`` whole (looping on short writes) or not at all; entries kept in
        memory by :meth:`defer` go first."""
        recovering = self.write_error is not None
        try:
            if recovering:
                self._reopen()
            while self._deferred:
                self._write_whole(self._deferred[0])
                self._size += len(self._deferred[0])
                self._deferred.pop(0)
                self.written_count += 1
            if line:
                self._write_whole(line)
            if self.fsync_interval == 0 or recovering:
                os.fsync(self._fd)
        except OSError as exc:
            self._truncate_back()
            self._failed(exc)
            raise AuditLogUnavailable(self.write_error) from exc
        if not line:
            self._recovered(recovering)
            return
        self._size += len(line)
        self.written_count += 1
        self._dirty = self.fsync_interval > 0
        self._recovered(recovering)

    def _write_whole(self, line: bytes) -> None:
        self._write_whole_fd(self._fd, line)

    def _recovered(self, recovering: bool) -> None:
        if recovering:
            self.write_error = None
            log.warning("access log: the spool in %s takes entries again; metrics %s",
                        self.directory, self.metrics())
        if self._size >= self.segment_bytes:
            self._rotate()
        self._wakeup.set()

    def _truncate_back(self) -> None:
        """Cut a half-written line off (the size before it is the last whole entry's end)."""
        with contextlib.suppress(OSError):
            if self._fd >= 0 and os.fstat(self._fd).st_size > self._size:
                os.ftruncate(self._fd, self._size)

    def _failed(self, exc: OSError) -> None:
        self.write_failures += 1
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        message = (f"the audit log is unavailable: writing to the spool in {self.directory} "
                   f"failed ({reason}); responses are refused until it can be written again "
                   "(free space or make it writable; it recovers by itself)")
        first = self.write_error is None
        self.write_error = message
        if first:
            log.error("access log: %s; metrics %s", message, self.metrics())

    def _reopen(self) -> None:
        """Before a probe write: open the segment afresh, a torn tail cut (see above)."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        self._open_segment(self._segment)

    def _rotate(self) -> None:
        try:
            os.fsync(self._fd)
            old = self._fd
            self._open_segment(self._segment + 1)
        except OSError as exc:
            # the entry is written; keep appending to this segment and try again next time
            log.warning("access log: cannot start a new spool segment in %s (%s); the current "
                        "one keeps growing", self.directory, exc)
            return
        os.close(old)
        self._dirty = False

    def _probe(self) -> None:
        """While unavailable: reopen the segment and fsync it (no entry), so the log notices a
        recovered disk even when no request comes."""
        if self.available:
            return
        try:
            self._reopen()
            os.fsync(self._fd)
        except OSError:
            return
        # the directory takes a file again? (a full disk still refuses the first write; a
        # request's own write is the probe that decides then)
        probe = self.directory / ".probe"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                self._write_whole_fd(fd, b"probe\n")
            finally:
                os.close(fd)
                probe.unlink()
        except OSError:
            return
        self._recovered(True)

    @staticmethod
    def _write_whole_fd(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            if written <= 0:
                raise OSError(errno.EIO, "the spool took no bytes")
            view = view[written:]

    def sync(self) -> None:
        """fsync the open segment if anything was written since the last sync."""
        if self._dirty:
            self._dirty = False
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self._failed(exc)

    # -- shipping ------------------------------------------------------------------------

    def _read_batch(self, *, hold: bool = True) -> tuple[list[dict[str, Any]], tuple[int, int]]:
        """Up to ``batch_size`` unshipped entries and the cursor just after them.

        A begin (``pending``) whose completion is in the same batch is replaced by it, so the
        portal usually sees one entry per request. With ``hold``, the batch stops before a
        begin written less than ``hold_pending`` seconds ago whose completion is not there yet
        (most requests complete within it, and the portal then never shows them in flight);
        a longer request is shipped as ``pending`` and completed later.
        """
        segment, offset = self._cursor
        entries: list[dict[str, Any]] = []
        pending_at: dict[tuple[Any, Any], int] = {}
        #: where each entry's line starts, and the young begins not completed in this batch
        starts: list[tuple[int, int]] = []
        young: set[int] = set()
        now = _monotonic()
        self._held = False
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
                    start = (segment, offset)
                    offset += len(line)
                    try:
                        entry = json.loads(line)
                        key = (entry["session_id"], entry["seq"])
                    except (ValueError, KeyError, TypeError):
                        continue
                    if entry.get("outcome") == PENDING:
                        pending_at[key] = len(entries)
                        begun = self._begun_at.get(key)
                        if hold and begun is not None and now - begun < self.hold_pending:
                            young.add(len(entries))
                    elif key in pending_at:
                        index = pending_at.pop(key)
                        entries[index] = entry
                        young.discard(index)
                        continue
                    entries.append(entry)
                    starts.append(start)
                at_end = handle.read(1) == b""
            if len(entries) >= self.batch_size or segment >= self._segment or not at_end:
                break
            segment, offset = segment + 1, 0
        if young:
            cut = min(young)
            self._held = True
            return entries[:cut], starts[cut]
        return entries, (segment, offset)

    def _advance(self, cursor: tuple[int, int]) -> None:
        """Move the cursor past a shipped batch; saving it may fail (read-only spool): then
        it is kept in memory and shipping goes on (a re-ship after a restart is deduplicated
        by the portal)."""
        self._cursor = cursor
        try:
            _write_json_atomic(self._cursor_path, {"segment": cursor[0], "offset": cursor[1]})
            old = [n for n in self._segments() if n < cursor[0]]
            if old:
                # the seq snapshot must outlive the entries it summarises
                _write_json_atomic(self._seq_path, self._next_seq)
                for number in old:
                    with contextlib.suppress(FileNotFoundError):
                        (self.directory / _segment_name(number)).unlink()
        except OSError as exc:
            if not self._cursor_unsaved:
                log.warning("access log: cannot save the shipping cursor in %s (%s); it is "
                            "kept in memory, shipping continues", self.directory, exc)
            self._cursor_unsaved = True
            return
        if self._cursor_unsaved:
            log.info("access log: the shipping cursor is saved again")
        self._cursor_unsaved = False

    def pending(self) -> bool:
        """True if some recorded entry has not been shipped yet."""
        entries, _ = self._read_batch(hold=False)
        return bool(entries)

    async def ship_once(self, *, hold: bool = True) -> int:
        """Ship one batch; returns how many entries the portal took (0 if none is ready)."""
        if self.shipper is None:
            return 0
        entries, cursor = self._read_batch(hold=hold)
        if not entries:
            return 0
        self.sync()
        await self.shipper.ship(entries)
        self._advance(cursor)
        self.shipped_count += len(entries)
        return len(entries)

    async def run(self) -> None:
        """Background task: fsync in batches and ship with retry until cancelled.

        Supervised: a failed batch (:class:`ShipError`) or any other exception (an unreadable
        spool, a bug) is logged, backed off (capped exponential, jittered) and retried; the
        task ends only when cancelled.
        """
        backoff = 0.5
        last_sync = asyncio.get_running_loop().time()
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel that
            # races with the wakeup, and this task would then never end
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ship_interval):
                    await self._wakeup.wait()
            self._wakeup.clear()
            try:
                if not self.write_deferred() or not self.available:
                    self._probe()
                now = asyncio.get_running_loop().time()
                if now - last_sync >= self.fsync_interval:
                    self.sync()
                    last_sync = now
                while await self.ship_once():
                    pass
                backoff = 0.5
                self.last_error = None
            except ShipError as exc:
                self.ship_failures += 1
                self.last_error = str(exc)
            except Exception as exc:  # the supervisor: log, back off, retry
                self.ship_failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("access log: shipping failed unexpectedly (retrying in %.1f s)",
                              backoff)
            else:
                continue
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self.max_backoff)

    async def drain(self, within: float = 5.0) -> bool:
        """Try to ship everything now (shutdown); True if nothing is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            try:
                if not await self.ship_once(hold=False):
                    return True
            except Exception as exc:  # shutdown: try until the deadline
                self.last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(0.2)
        return not self.pending()

    def close(self) -> None:
        self.sync()
        if self._cursor_unsaved:
            with contextlib.suppress(OSError):
                _write_json_atomic(self._cursor_path, {"segment": self._cursor[0],
                                                       "offset": self._cursor[1]})
        with contextlib.suppress(OSError):
            os.close(self._fd)
