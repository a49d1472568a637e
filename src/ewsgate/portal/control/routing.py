"""Routing a command to the portal replica that holds the installation's control stream.

Every part of the portal that talks to an agent calls :meth:`CommandRouter.send_command`
(the same signature as :meth:`ControlHub.send_command`). Two routers stand behind it:

* :class:`InProcessRouter` — one portal process (``ewsgate demo``, a single portal on SQLite):
  the command goes to this process's hub; no broker is needed.
* :class:`NatsRouter` — several replicas (``--broker-url nats://HOST:PORT``)::

      replica A                          NATS                        replica B (holds stream 42)
      send_command(42, ...)                                           hub.attach(42) → subscribe
        hub holds 42? no ──request──▶ ewsgate.v1.installation.42.command ──▶ hub.send_command
        ◀──────────── progress notes (A's inbox) ◀───────────────────────── agent's progress
        ◀──────────── reply (agent's result or the hub's error) ◀─────────── agent's result

  A replica subscribes to an installation's subject while its hub holds that installation's
  stream and unsubscribes when the stream ends. A request nobody is subscribed to comes back
  at once as "no responders" (the NATS server knows there is no subscriber): the installation
  is offline, and the caller gets :class:`InstallationOffline` — the error the UI shows today —
  without waiting for a timeout. A command for a stream this replica holds never leaves the
  process.

What crosses between replicas is in :mod:`.replica_messages` (versioned). The command is
recorded in ``control_commands`` by the holder's hub, as for a local one, so its id, status and
replay guard live in the database whichever replica sent it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from ewsgate.portal.control import hub as hub_module
from ewsgate.portal.control.hub import (
    CommandError,
    CommandTimedOut,
    ControlHub,
    InstallationOffline,
    Progress,
    ProgressCallback,
)
from ewsgate.portal.control.replica_messages import (
    CommandReply,
    CommandRequest,
    MessageError,
    ProgressNote,
    command_subject,
    parse_progress,
    parse_reply,
    parse_request,
)
from ewsgate.portal.options import parse_broker_url
from ewsgate.portal.services.errors import InvalidInput, ServiceError

__all__ = ["BrokerUnavailable", "CommandRouter", "InProcessRouter", "NatsRouter",
           "parse_broker_url", "router_of", "routing_service"]

log = logging.getLogger(__name__)

HubSource = Callable[[], ControlHub | None]
#: seconds a forwarded command's reply may take beyond the command's own timeout
_REPLY_MARGIN = 2.0


class BrokerUnavailable(CommandError):
    """This replica cannot reach the message broker, so it cannot reach other replicas."""

    code = "broker_unavailable"
    status = 503


@runtime_checkable
class CommandRouter(Protocol):
    """Sends a command to an installation wherever its stream is held (a background service)."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_command(self, installation_id: int, kind: str,
                           payload: Mapping[str, Any] | None = None, *,
                           timeout: float = 30.0,  # noqa: ASYNC109
                           on_progress: ProgressCallback | None = None) -> dict[str, Any]: ...


def _no_control_server() -> InstallationOffline:
    return InstallationOffline("this portal process runs without its control server, so no "
                               "installation can be reached")


class InProcessRouter:
    """One portal process: every stream is in this process's hub."""

    name = "command routing (in process)"

    def __init__(self, hub_source: HubSource) -> None:
        self._hub_source = hub_source

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send_command(self, installation_id: int, kind: str,
                           payload: Mapping[str, Any] | None = None, *,
                           timeout: float = 30.0,  # noqa: ASYNC109
                           on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        hub = self._hub_source()
        if hub is None:
            raise _no_control_server()
        return await hub.send_command(installation_id, kind, payload, timeout=timeout,
                                      on_progress=on_progress)


def _offline(installation_id: int) -> InstallationOffline:
    return InstallationOffline(
        f"installation {installation_id} is offline: no portal replica holds its control "
        "stream. Check that `ewsgate agent run` is running at the site and can reach the portal")


def _error_from_reply(reply: CommandReply) -> ServiceError:
    if reply.error_class == "InvalidInput":
        return InvalidInput(reply.error_message, code=reply.error_code or None)
    cls = getattr(hub_module, reply.error_class)
    error: ServiceError = cls(reply.error_message, code=reply.error_code or None)
    return error


def _reply_from_error(error: ServiceError, holder: str) -> CommandReply:
    name = "InvalidInput" if isinstance(error, InvalidInput) else type(error).__name__
    if name not in ("InvalidInput", "InstallationOffline", "CommandTimedOut", "CommandFailed",
                    "CommandRefused"):
        name = "CommandError"
    return CommandReply(ok=False, error_class=name, error_code=error.code,
                        error_message=error.message, holder=holder)


class NatsRouter:
    """Several replicas: commands for streams held elsewhere go through NATS request/reply."""

    name = "command routing (NATS)"

    def __init__(self, hub_source: HubSource, broker_url: str, *,
                 replica: str | None = None, connect_timeout: float = 5.0) -> None:
        self._hub_source = hub_source
        self.broker_url = broker_url
        self.replica = replica or f"{socket.gethostname()}:{id(self):x}"
        self._connect_timeout = connect_timeout
        self._nc: Any = None
        self._subscriptions: dict[int, Any] = {}
        self._changes: asyncio.Queue[int] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._hub: ControlHub | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        import nats

        try:
            # bounded: the client would otherwise keep retrying a server that is not there
            self._nc = await asyncio.wait_for(nats.connect(
                self.broker_url.split(","), name=f"ewsgate-portal {self.replica}",
                connect_timeout=self._connect_timeout, max_reconnect_attempts=-1,
                reconnect_time_wait=0.5, allow_reconnect=True),
                self._connect_timeout * 2)
        except Exception as exc:
            reason = "no answer" if isinstance(exc, TimeoutError) else str(exc) or type(exc)
            raise RuntimeError(f"--broker-url {self.broker_url}: cannot connect to NATS "
                               f"({reason}); start nats-server there or fix the URL") from None
        self._hub = self._hub_source()
        if self._hub is not None:
            self._hub.presence_listeners.append(self._changes.put_nowait)
            for installation_id in self._hub.online_ids():
                self._changes.put_nowait(installation_id)
        self._worker = asyncio.create_task(self._reconcile_forever())

    async def stop(self) -> None:
        if self._hub is not None:
            with contextlib.suppress(ValueError):
                self._hub.presence_listeners.remove(self._changes.put_nowait)
        tasks = [t for t in (self._worker, *self._handlers) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
            self._nc = None
        self._subscriptions.clear()

    def holds_subscription(self, installation_id: int) -> bool:
        """True while this replica answers for the installation on NATS."""
        return installation_id in self._subscriptions

    async def _reconcile_forever(self) -> None:
        """Subscribe while the hub holds a stream, unsubscribe when it does not (in order)."""
        while True:
            installation_id = await self._changes.get()
            try:
                await self._reconcile(installation_id)
            except Exception:
                log.exception("NATS subscription of installation %s failed; retrying",
                              installation_id)
                await asyncio.sleep(0.5)
                self._changes.put_nowait(installation_id)

    async def _reconcile(self, installation_id: int) -> None:
        held = self._hub is not None and self._hub.is_online(installation_id)
        current = self._subscriptions.get(installation_id)
        if held and current is None:
            subscription = await self._nc.subscribe(command_subject(installation_id),
                                                    cb=self._on_request)
            await self._nc.flush()  # the server has the SUB: requests now find this replica
            self._subscriptions[installation_id] = subscription
        elif not held and current is not None:
            # until the server has the UNSUB, requests still arrive and are answered "offline"
            await current.unsubscribe()
            await self._nc.flush()
            del self._subscriptions[installation_id]

    # ------------------------------------------------------------------ caller side

    async def send_command(self, installation_id: int, kind: str,
                           payload: Mapping[str, Any] | None = None, *,
                           timeout: float = 30.0,  # noqa: ASYNC109
                           on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        hub = self._hub or self._hub_source()
        if hub is not None and hub.is_online(installation_id):
            return await hub.send_command(installation_id, kind, payload, timeout=timeout,
                                          on_progress=on_progress)
        try:
            request = CommandRequest(installation_id=installation_id, kind=kind,
                                     payload=dict(payload or {}), timeout=timeout,
                                     origin=self.replica)
        except MessageError as exc:
            raise InvalidInput(str(exc), field="kind") from None
        nc = self._nc
        if nc is None or not nc.is_connected:
            raise BrokerUnavailable(
                f"cannot reach installation {installation_id}: this portal replica has lost its "
                f"message broker ({self.broker_url}), and the installation's control stream is "
                "held by another replica. Retry in a moment; check nats-server if it persists")
        progress_sub = None
        if on_progress is not None:
            inbox = nc.new_inbox()
            progress_sub = await nc.subscribe(inbox, cb=self._progress_handler(on_progress))
            request = CommandRequest(installation_id=installation_id, kind=kind,
                                     payload=request.payload, timeout=timeout,
                                     progress_to=inbox, origin=self.replica)
        try:
            try:
                encoded = request.encode()
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"command payload is not JSON: {exc}",
                                   field="payload") from None
            return await self._request(nc, installation_id, kind, encoded, timeout)
        finally:
            if progress_sub is not None:
                # drain, not unsubscribe: notes already received still reach the callback
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(progress_sub.drain(), 5)

    async def _request(self, nc: Any, installation_id: int, kind: str, encoded: bytes,
                       timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        from nats import errors as nats_errors

        try:
            message = await nc.request(command_subject(installation_id), encoded,
                                       timeout=timeout + _REPLY_MARGIN)
        except nats_errors.NoRespondersError:
            raise _offline(installation_id) from None
        except nats_errors.TimeoutError:
            raise CommandTimedOut(
                f"{kind} to installation {installation_id}: the replica holding its stream "
                f"did not answer within {timeout + _REPLY_MARGIN:g} s; whether it ran is "
                "unknown — check the installation and retry") from None
        except (nats_errors.ConnectionClosedError, nats_errors.NoServersError) as exc:
            raise BrokerUnavailable(f"{kind} to installation {installation_id}: the message "
                                    f"broker went away ({exc}); retry in a moment") from None
        try:
            reply = parse_reply(message.data)
        except MessageError as exc:
            raise CommandError(f"{kind} to installation {installation_id}: the replica holding "
                               f"its stream sent a reply this replica cannot read ({exc})",
                               code="bad_replica_reply") from None
        if not reply.ok:
            raise _error_from_reply(reply)
        return reply.result

    @staticmethod
    def _progress_handler(on_progress: ProgressCallback) -> Callable[[Any], Any]:
        async def handle(message: Any) -> None:
            try:
                note = parse_progress(message.data)
                outcome = on_progress(Progress(note.command_id, note.stage, note.detail))
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("a progress note from another replica could not be handled")

        return handle

    # ------------------------------------------------------------------ holder side

    async def _on_request(self, message: Any) -> None:
        # nats-py runs one subscription's callbacks one after the other: run each command
        # as its own task so that a slow command does not hold up the next
        task = asyncio.create_task(self._serve(message))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _serve(self, message: Any) -> None:
        reply = await self._answer(message)
        if message.reply:
            with contextlib.suppress(Exception):
                await message.respond(reply.encode())

    async def _answer(self, message: Any) -> CommandReply:
        try:
            request = parse_request(message.data)
        except MessageError as exc:
            log.warning("refused a malformed command from another replica: %s", exc)
            return CommandReply(ok=False, error_class="InvalidInput", error_code="bad_message",
                                error_message=str(exc), holder=self.replica)
        if message.subject != command_subject(request.installation_id):
            return CommandReply(ok=False, error_class="InvalidInput", error_code="bad_message",
                                error_message="the command names another installation than "
                                              "its subject", holder=self.replica)
        hub = self._hub
        if hub is None or not hub.is_online(request.installation_id):
            return _reply_from_error(_offline(request.installation_id), self.replica)
        on_progress = None
        notes: list[asyncio.Task[None]] = []
        if request.progress_to:
            subject = request.progress_to

            def on_progress(progress: Progress) -> None:
                # published in order, and all of them before the reply (see below)
                notes.append(asyncio.ensure_future(self._nc.publish(subject, ProgressNote(
                    command_id=progress.command_id, stage=progress.stage,
                    detail=progress.detail).encode())))

        try:
            result = await hub.send_command(request.installation_id, request.kind,
                                            request.payload, timeout=request.timeout,
                                            on_progress=on_progress)
            reply = CommandReply(ok=True, result=result, holder=self.replica)
        except ServiceError as exc:
            reply = _reply_from_error(exc, self.replica)
        except Exception as exc:  # answer rather than leave the caller to its timeout
            log.exception("forwarded %s for installation %s failed", request.kind,
                          request.installation_id)
            reply = CommandReply(ok=False, error_class="CommandError",
                                 error_code="portal_error",
                                 error_message=f"the replica holding the stream failed: {exc}",
                                 holder=self.replica)
        if notes:
            await asyncio.gather(*notes, return_exceptions=True)
        return reply


def _control_hub(ctx: Any) -> ControlHub | None:
    control = next((s for s in getattr(ctx, "background", ())
                    if isinstance(getattr(s, "hub", None), ControlHub)), None)
    return control.hub if control is not None else None


def routing_service(ctx: Any) -> CommandRouter:
    """The router of ``ewsgate portal``: NATS with ``--broker-url``, else in process."""
    values = getattr(ctx.config, "values", {}) or {}
    broker_url = values.get("broker_url")
    if broker_url:
        url = broker_url if isinstance(broker_url, str) else str(broker_url)
        return NatsRouter(lambda: _control_hub(ctx), parse_broker_url(url))
    return InProcessRouter(lambda: _control_hub(ctx))


def router_of(ctx: Any) -> CommandRouter | None:
    """The portal's router among its background services, if it has one."""
    return next((s for s in getattr(ctx, "background", ()) if isinstance(s, CommandRouter)),
                None)
