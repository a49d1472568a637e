"""The control hub: which installations are connected, and commands sent down their streams.

One :class:`ControlHub` per portal process. The gRPC servicer (:mod:`.server`) attaches a
:class:`Connection` when an installation's stream is accepted and detaches it when the stream
ends; the rest of the portal only calls :meth:`ControlHub.send_command`::

    result = await hub.send_command(installation_id, "VerifyDevice", {"ip": ...}, timeout=20,
                                    on_progress=lambda p: print(p.stage, p.detail))

Delivery rules (what a caller can rely on):

* Every command gets a fresh 128-bit id, is recorded in ``control_commands`` first (status
  ``pending`` → ``sent`` → ``ok`` / ``failed`` / ``refused`` / ``timeout`` / ``offline``, with
  the error code in ``result``), and is written to the stream at most once. The agent
  refuses an id it has seen, so nothing runs twice.
* An installation that is **offline** when the command is sent gets ``offline_grace`` seconds
  (default 10 s, never more than the timeout) to connect; then :class:`InstallationOffline`.
* A command not yet written when the stream drops stays queued and goes down the next stream of
  that installation if it comes back before the timeout — commands sent while the agent is
  reconnecting are delivered, not lost.
* A command already written when the stream drops is not resent. The agent keeps results it
  could not send and sends them after it reconnects, so the result still arrives if the agent
  comes back in time; otherwise :class:`CommandTimedOut` says that the connection was lost after
  the command was sent and that its outcome is unknown.
* A result is accepted only from a stream of the installation the command was sent to.

Attach listeners (:meth:`ControlHub.add_attach_listener`) are called, in the background, each
time an installation's stream is accepted: the session service resumes that installation's
live sessions then (an agent that restarted lost its tunnels).

Liveness: the agent sends a heartbeat every ``heartbeat_interval``; a stream silent for
``heartbeat_interval * missed_heartbeats`` is cut and the installation marked offline. The sweep
also re-checks every live stream's certificate against the database in one batch, so a deleted
or disabled installation (or a superseded certificate) loses its stream within
``sweep_interval``; :meth:`ControlHub.disconnect` cuts one at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import json
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ewsgate.portal.control.records import ControlRecords, Refusal
from ewsgate.portal.services.errors import InvalidInput, ServiceError
from ewsgate.proto import control_pb2 as pb
from ewsgate.textsafe import safe_json, safe_text

__all__ = [
    "CommandError",
    "CommandFailed",
    "CommandRefused",
    "CommandSender",
    "CommandTimedOut",
    "Connection",
    "ControlHub",
    "HubConfig",
    "InstallationOffline",
    "Progress",
    "ProgressCallback",
]

log = logging.getLogger(__name__)
#: longest text an agent's result, error or progress string keeps (escaped; see textsafe)
_PEER_TEXT = 2000


def _status_of(error: CommandError) -> str:
    """The ``control_commands.status`` word (at most 16 characters) for a failed command."""
    if isinstance(error, InstallationOffline):
        return "offline"
    if isinstance(error, CommandTimedOut):
        return "timeout"
    if isinstance(error, CommandRefused):
        return "refused"
    return "failed"


class CommandError(ServiceError):
    """A command did not produce a result. ``code`` says why; the message says what to do."""

    code = "command_failed"
    status = 502


class InstallationOffline(CommandError):
    code = "installation_offline"
    status = 503


class CommandTimedOut(CommandError):
    code = "command_timeout"
    status = 504


class CommandFailed(CommandError):
    """The agent ran the command and it failed; ``code`` is the agent's error code."""

    code = "command_failed"
    status = 502


class CommandRefused(CommandError):
    """The agent did not run the command (unknown kind, replayed id, past deadline...)."""

    code = "command_refused"
    status = 502


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress report from the agent about one command."""

    command_id: str
    stage: str
    detail: str


ProgressCallback = Callable[[Progress], Awaitable[None] | None]


class CommandSender(Protocol):
    """What callers need of a hub: :class:`ControlHub` itself, or a late-bound stand-in."""

    async def send_command(self, installation_id: int, kind: str,
                           payload: Mapping[str, Any] | None = None, *,
                           timeout: float = 30.0,  # noqa: ASYNC109
                           on_progress: ProgressCallback | None = None) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class HubConfig:
    """Timing of the hub; the defaults keep "offline within 7.5 s of a drop" (three missed
    heartbeats) and "offline within 5 s of a replica's crash" (two heartbeat intervals without
    the row's refresh; it used to be the row's age, 10 s)."""

    heartbeat_interval: float = 2.5
    missed_heartbeats: int = 3
    sweep_interval: float = 1.0
    #: how often live streams are re-checked against the database and last_seen refreshed
    db_sweep_interval: float = 2.0
    #: how long a command to an offline installation waits for it to connect
    offline_grace: float = 10.0
    #: installations marked online whose last_seen_at is older than this are marked offline
    #: (by any replica's sweep: this is what ends the "online" of a replica that crashed);
    #: None: twice the heartbeat interval (or twice the refresh interval if that is longer)
    stale_after: float | None = None
    #: online/offline changes are written in batches, this long after the first one
    presence_delay: float = 0.2

    def __post_init__(self) -> None:
        if self.heartbeat_interval <= 0 or self.missed_heartbeats < 1 or self.sweep_interval <= 0:
            raise ValueError("heartbeat_interval and sweep_interval must be > 0, "
                             "missed_heartbeats >= 1")
        if self.stale_limit <= self.db_sweep_interval:
            raise ValueError(f"stale_after ({self.stale_limit:g} s) must be longer than "
                             f"db_sweep_interval ({self.db_sweep_interval:g} s), or live "
                             "installations would flap offline between refreshes")

    @property
    def stale_limit(self) -> float:
        """Seconds after which an unrefreshed "online" row is marked offline."""
        if self.stale_after is not None:
            return self.stale_after
        return 2 * max(self.heartbeat_interval, self.db_sweep_interval)

    @property
    def silence_limit(self) -> float:
        return self.heartbeat_interval * self.missed_heartbeats


@dataclass(eq=False)
class Connection:
    """One accepted stream. The servicer writes what :meth:`ControlHub.take` hands it."""

    installation_id: int
    cert_serial: str
    peer: str
    connected_at: float
    last_message_at: float
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    control: deque[pb.PortalMessage] = field(default_factory=deque)
    #: set when the stream must end; the servicer aborts with this status and message
    closing: Refusal | None = None
    #: the servicer's task; cancelled when it does not end by itself soon after close()
    task: asyncio.Task[Any] | None = None

    def push(self, message: pb.PortalMessage) -> None:
        self.control.append(message)
        self.wakeup.set()

    def close(self, refusal: Refusal, grace: float = 1.0) -> None:
        """End the stream with ``refusal``; a writer stuck on a dead path is cancelled."""
        if self.closing is None:
            self.closing = refusal
            if self.task is not None:
                task = self.task
                asyncio.get_running_loop().call_later(
                    grace, lambda: None if task.done() else task.cancel())
        self.wakeup.set()


@dataclass(eq=False)
class _Pending:
    command_id: str
    installation_id: int
    kind: str
    message: pb.PortalMessage
    future: asyncio.Future[pb.CommandResult]
    on_progress: ProgressCallback | None
    sent_at: dt.datetime | None = None
    lost_at: dt.datetime | None = None


class ControlHub:
    """Registry of live streams and the command dispatcher (see the module docstring)."""

    def __init__(self, records: ControlRecords, *, config: HubConfig | None = None,
                 clock: Callable[[], dt.datetime]) -> None:
        self.records = records
        self.config = config or HubConfig()
        self.clock = clock
        self._connections: dict[int, Connection] = {}
        self._outbox: dict[int, deque[_Pending]] = {}
        self._pending: dict[str, _Pending] = {}
        self._online_events: dict[int, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._presence: dict[int, tuple[bool, str | None, dt.datetime]] = {}
        self._presence_dirty = asyncio.Event()
        #: called with an installation id whenever this hub gains or loses its stream (the
        #: router subscribes and unsubscribes on the broker: :mod:`.routing`)
        self.presence_listeners: list[Callable[[int], None]] = []
        self._attach_listeners: list[Callable[[int], Awaitable[Any]]] = []

    def add_attach_listener(self, listener: Callable[[int], Awaitable[Any]]) -> None:
        """Call ``listener(installation_id)`` (in the background) whenever a stream attaches."""
        if listener not in self._attach_listeners:
            self._attach_listeners.append(listener)

    # ------------------------------------------------------------------ queries

    def is_online(self, installation_id: int) -> bool:
        """True while this process holds a live stream of the installation."""
        return installation_id in self._connections

    def online_ids(self) -> frozenset[int]:
        return frozenset(self._connections)

    async def wait_online(self, installation_id: int, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to ``timeout`` seconds for the installation's stream; True if it is live."""
        if self.is_online(installation_id):
            return True
        event = self._online_events.setdefault(installation_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return self.is_online(installation_id)

    def disconnect(self, installation_id: int, reason: str = "installation deleted", *,
                   cert_serial: str | None = None) -> bool:
        """Cut the installation's live stream at once (call after deleting or disabling it);
        with ``cert_serial``, only a stream that presented that certificate."""
        connection = self._connections.get(installation_id)
        if connection is None or cert_serial not in (None, connection.cert_serial):
            return False
        connection.close(Refusal("installation_revoked", "PERMISSION_DENIED", reason))
        return True

    # ------------------------------------------------------------------ commands

    async def send_command(self, installation_id: int, kind: str,
                           payload: Mapping[str, Any] | None = None, *,
                           timeout: float = 30.0,  # noqa: ASYNC109 (also the agent's deadline)
                           on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Run ``kind`` on the installation's agent and return its result payload.

        Raises :class:`InstallationOffline`, :class:`CommandTimedOut`, :class:`CommandFailed`
        (the agent's own error code) or :class:`CommandRefused`; all are :class:`CommandError`.
        ``on_progress`` (plain or async) is called for each progress report.
        """
        if not kind or not kind.isidentifier():
            raise InvalidInput(f"command kind {kind!r} is not a name such as VerifyDevice",
                               field="kind")
        if timeout <= 0:
            raise InvalidInput("timeout must be positive", field="timeout")
        body = dict(payload or {})
        try:
            encoded = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"command payload is not JSON: {exc}", field="payload") from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        now = self.clock()
        command_id = secrets.token_hex(16)
        message = pb.PortalMessage(command=pb.Command(
            id=command_id, kind=kind, payload_json=encoded,
            deadline_unix_ms=int((now + dt.timedelta(seconds=timeout)).timestamp() * 1000)))
        await self.records.record_command(command_id, installation_id, kind, body, now)
        pending = _Pending(command_id, installation_id, kind, message, loop.create_future(),
                           on_progress)
        self._pending[command_id] = pending
        try:
            if not await self.wait_online(installation_id,
                                          min(timeout, self.config.offline_grace)):
                raise InstallationOffline(
                    f"installation {installation_id} is offline: its agent has no control "
                    f"stream (waited {min(timeout, self.config.offline_grace):g} s). Check that "
                    "`ewsgate agent run` is running at the site and can reach the portal")
            self._outbox.setdefault(installation_id, deque()).append(pending)
            self._wake(installation_id)
            try:
                result = await asyncio.wait_for(asyncio.shield(pending.future),
                                                max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise self._timeout_error(pending, timeout) from None
            outcome = self._outcome(pending, result)
        except CommandError as exc:
            await self.records.finish_command(command_id, _status_of(exc),
                                              {"error_code": exc.code, "error": exc.message},
                                              self.clock())
            raise
        finally:
            self._pending.pop(command_id, None)
            outbox = self._outbox.get(installation_id)
            if outbox is not None and pending in outbox:
                outbox.remove(pending)
        await self.records.finish_command(command_id, "ok", outcome, self.clock())
        return outcome

    def _timeout_error(self, pending: _Pending, timeout: float) -> CommandTimedOut:
        base = f"{pending.kind} {pending.command_id} to installation {pending.installation_id}"
        if pending.sent_at is None:
            return CommandTimedOut(f"{base} was not delivered within {timeout:g} s: the agent "
                                   "was not connected long enough; nothing was run")
        if pending.lost_at is not None:
            return CommandTimedOut(
                f"{base} was sent at {pending.sent_at:%H:%M:%S} but the connection was lost at "
                f"{pending.lost_at:%H:%M:%S} and no result came back within {timeout:g} s; "
                "whether it ran is unknown — check the installation and retry")
        return CommandTimedOut(f"{base} got no result within {timeout:g} s")

    @staticmethod
    def _outcome(pending: _Pending, result: pb.CommandResult) -> dict[str, Any]:
        try:
            payload = json.loads(result.payload_json or b"{}")
        except ValueError:
            payload = None
        if result.status == pb.CommandResult.OK:
            if not isinstance(payload, dict):
                raise CommandFailed(f"{pending.kind}: the agent's result is not a JSON object",
                                    code="bad_result")
            clean = safe_json(payload, limit=_PEER_TEXT)
            assert isinstance(clean, dict)
            return clean
        message = safe_text(result.error_message or "no reason given", limit=_PEER_TEXT)
        code = safe_text(result.error_code, limit=64) or None
        if result.status == pb.CommandResult.REFUSED:
            raise CommandRefused(f"the agent refused {pending.kind}: {message}",
                                 code=code or "command_refused")
        raise CommandFailed(f"{pending.kind} failed on the agent: {message}",
                            code=code or "command_failed")

    # ------------------------------------------------------------------ used by the servicer

    async def attach(self, connection: Connection, agent_version: str | None = None) -> None:
        """Register an accepted stream; an older stream of the same installation is cut."""
        previous = self._connections.get(connection.installation_id)
        if previous is not None:
            previous.close(Refusal("stream_replaced", "ABORTED",
                                   "a newer stream of this installation replaced this one"))
        self._connections[connection.installation_id] = connection
        self._note_presence(connection.installation_id, True, agent_version)
        event = self._online_events.pop(connection.installation_id, None)
        if event is not None:
            event.set()
        connection.wakeup.set()
        for listener in self._attach_listeners:
            self._spawn(listener(connection.installation_id))

    async def detach(self, connection: Connection) -> None:
        """Forget an ended stream; mark the installation offline unless a newer one took over."""
        if self._connections.get(connection.installation_id) is not connection:
            return
        del self._connections[connection.installation_id]
        now = self.clock()
        for pending in self._pending.values():
            if pending.installation_id == connection.installation_id and pending.sent_at:
                pending.lost_at = pending.lost_at or now
        self._note_presence(connection.installation_id, False, None)

    def take(self, connection: Connection) -> tuple[pb.PortalMessage, str | None] | None:
        """The next message for this stream and, for a command, its id (see :meth:`sent`)."""
        if connection.control:
            return connection.control.popleft(), None
        if self._connections.get(connection.installation_id) is not connection:
            return None
        outbox = self._outbox.get(connection.installation_id)
        while outbox:
            pending = outbox.popleft()
            if pending.command_id in self._pending and not pending.future.done():
                return pending.message, pending.command_id
        return None

    def sent(self, command_id: str, written: bool) -> None:
        """The servicer wrote (``written``) or failed to write a command taken from the outbox."""
        pending = self._pending.get(command_id)
        if pending is None:
            return
        if written:
            pending.sent_at = self.clock()
            self._spawn(self.records.set_command_status(command_id, "sent"))
        else:
            self._outbox.setdefault(pending.installation_id, deque()).appendleft(pending)

    def on_result(self, connection: Connection, result: pb.CommandResult) -> None:
        pending = self._pending.get(result.command_id)
        if pending is None or pending.future.done():
            log.info("result for unknown or finished command %s from installation %s ignored",
                     safe_text(result.command_id, limit=64), connection.installation_id)
            return
        if pending.installation_id != connection.installation_id:
            log.warning("installation %s sent a result for command %s of installation %s; "
                        "ignored", connection.installation_id,
                        safe_text(result.command_id, limit=64),
                        pending.installation_id)
            return
        pending.future.set_result(result)

    def on_progress(self, connection: Connection, progress: pb.CommandProgress) -> None:
        pending = self._pending.get(progress.command_id)
        if (pending is None or pending.on_progress is None
                or pending.installation_id != connection.installation_id):
            return
        try:
            outcome = pending.on_progress(Progress(
                progress.command_id, safe_text(progress.stage, limit=64),
                safe_text(progress.detail, limit=_PEER_TEXT)))
        except Exception:
            log.exception("progress callback of command %s failed", progress.command_id)
            return
        if inspect.isawaitable(outcome):
            self._spawn(outcome)

    def _note_presence(self, installation_id: int, online: bool, version: str | None) -> None:
        self._presence[installation_id] = (online, version, self.clock())
        self._presence_dirty.set()
        for listener in self.presence_listeners:
            listener(installation_id)

    async def flush_presence(self) -> None:
        """Write the online/offline changes noted since the last flush, in one batch."""
        changes, self._presence = self._presence, {}
        self._presence_dirty.clear()
        if not changes:
            return
        try:
            await self.records.apply_presence(changes)
        except BaseException:
            for installation_id, change in changes.items():  # keep what is not newer
                self._presence.setdefault(installation_id, change)
            self._presence_dirty.set()
            raise

    async def run_presence_writer(self) -> None:
        """Flush presence changes ``presence_delay`` after the first one, until cancelled.

        Batching keeps a reconnect storm (a portal restart with thousands of agents) to a few
        database writes a second instead of one per stream.
        """
        while True:
            await self._presence_dirty.wait()
            await asyncio.sleep(self.config.presence_delay)
            try:
                await self.flush_presence()
            except Exception:
                log.exception("writing online/offline states failed; retrying")
                await asyncio.sleep(1.0)

    def _wake(self, installation_id: int) -> None:
        connection = self._connections.get(installation_id)
        if connection is not None:
            connection.wakeup.set()

    def _spawn(self, awaitable: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await awaitable
            except Exception:
                log.exception("control hub background step failed")

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ liveness sweep

    def cut_silent(self, monotonic_now: float) -> None:
        """Cut every stream that has been silent for longer than the silence limit."""
        for connection in list(self._connections.values()):
            if monotonic_now - connection.last_message_at > self.config.silence_limit:
                connection.close(Refusal(
                    "heartbeat_timeout", "UNAVAILABLE",
                    f"no message for {self.config.silence_limit:g} s; reconnect"))

    async def sweep_once(self, monotonic_now: float) -> None:
        """Cut silent streams and revoked certificates; refresh last_seen; repair stale rows."""
        self.cut_silent(monotonic_now)
        live = list(self._connections.values())
        serials = {c.installation_id: c.cert_serial for c in live if c.closing is None}
        if serials:
            refused = await self.records.refused_among(serials)
            for installation_id, refusal in refused.items():
                connection = self._connections.get(installation_id)
                if connection is not None:
                    connection.close(refusal)
        now = self.clock()
        alive = [c.installation_id for c in live if c.closing is None]
        if alive:
            await self.records.touch(alive, now)
            # a stream that ended while the touch ran was just marked online again: undo
            for installation_id in alive:
                if installation_id not in self._connections:
                    self._note_presence(installation_id, False, None)
        await self.records.mark_stale_offline(
            now - dt.timedelta(seconds=self.config.stale_limit))

    async def run_sweeper(self) -> None:
        """Run :meth:`sweep_once` every ``sweep_interval`` until cancelled."""
        loop = asyncio.get_running_loop()
        last_db = -float("inf")
        while True:
            try:
                if loop.time() - last_db >= self.config.db_sweep_interval:
                    last_db = loop.time()
                    await self.sweep_once(loop.time())
                else:
                    self.cut_silent(loop.time())
            except Exception:
                log.exception("control sweep failed; retrying")
            await asyncio.sleep(self.config.sweep_interval)

    def close_all(self, reason: str = "the portal is shutting down") -> None:
        for connection in list(self._connections.values()):
            connection.close(Refusal("portal_shutdown", "UNAVAILABLE", reason))
