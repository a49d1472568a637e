"""The agent's control stream: one mTLS gRPC stream to the portal, kept open for ever.

States (guarded; :attr:`ControlClient.state`)::

    IDLE ─▶ CONNECTING ─▶ CONNECTED ─┐         any failure: BACKOFF, then CONNECTING again
              ▲   │                  │         (exponential, full jitter in [d/2, d], cap 30 s;
              │   ▼                  ▼          reset after a stream that was up 10 s)
              └ BACKOFF ◀────────────┘         stop(): STOPPED from anywhere

On CONNECTED the agent has sent ``Hello`` and received ``Welcome``. Then:

* **heartbeats** every ``heartbeat_interval_ms`` (from Welcome); the portal echoes them. No
  message from the portal for three intervals means a dead path: the stream is torn down and
  the agent reconnects (gRPC keepalive pings cover the TCP side as well);
* **commands** run as tasks through :class:`CommandGate` (replayed ids and expired deadlines
  are refused; unknown kinds are refused) and the registered :data:`CommandHandler`. Results go
  into an outbox that survives reconnects: a result the stream could not carry goes down the
  next stream;
* **renewal** when two thirds of the certificate's life have passed (by the injected clock), or
  on a ``RenewCertificate`` command: a new key and CSR, ``RenewRequest`` on the stream, the new
  key and certificate saved, then an immediate reconnect with them (the portal adopts the new
  certificate on first use and refuses the old one from then on).

The proxy (``--proxy`` / HTTPS_PROXY) is handed to grpcio as ``grpc.http_proxy``. Each attempt
builds a new channel from the data directory, so a renewed certificate is picked up.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import json
import logging
import random
import secrets
import socket
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from ewsgate import pki
from ewsgate.agent.portal_addresses import PortalAddresses, Resolver, system_resolver
from ewsgate.agent.proxy import ProxyConfig
from ewsgate.agent.state import AgentIdentity, AgentState
from ewsgate.config import HostPort
from ewsgate.proto import control_pb2 as pb
from ewsgate.proto import control_pb2_grpc as pb_grpc
from ewsgate.textsafe import safe_text

__all__ = [
    "Backoff",
    "ClientConfig",
    "ClientState",
    "CommandContext",
    "CommandFailure",
    "CommandGate",
    "CommandHandler",
    "ControlClient",
    "retry_after_of",
]

log = logging.getLogger(__name__)
RENEW_KIND = "RenewCertificate"
#: most messages kept for the next stream while the portal is unreachable
_MAX_OUTBOX = 10_000


class CommandFailure(Exception):
    """Raise from a handler: the command ran and failed (sent as FAILED with this code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class CommandContext:
    """What a command handler gets. ``progress(stage, detail)`` reports a step to the portal."""

    id: str
    kind: str
    payload: dict[str, Any]
    deadline: dt.datetime
    progress: Callable[[str, str], None]


#: ``async def handler(ctx) -> dict``: return the result payload (a JSON object) or raise
#: :class:`CommandFailure`. Register handlers by kind in the mapping given to ControlClient.
CommandHandler = Callable[[CommandContext], Awaitable[dict[str, Any]]]


class ClientState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    STOPPED = "stopped"


_TRANSITIONS = {
    ClientState.IDLE: {ClientState.CONNECTING, ClientState.STOPPED},
    ClientState.CONNECTING: {ClientState.CONNECTED, ClientState.BACKOFF, ClientState.STOPPED,
                             ClientState.CONNECTING},
    ClientState.CONNECTED: {ClientState.BACKOFF, ClientState.CONNECTING, ClientState.STOPPED},
    ClientState.BACKOFF: {ClientState.CONNECTING, ClientState.STOPPED},
    ClientState.STOPPED: set(),
}


@dataclass(frozen=True, slots=True)
class ClientConfig:
    agent_version: str = "0"
    proxy: ProxyConfig | None = None
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    #: a stream that stayed up this long resets the backoff
    stable_after: float = 10.0
    connect_timeout: float = 10.0
    renew_fraction: float = 2 / 3
    renew_check_interval: float = 60.0
    #: never renew twice within this many seconds (guards against a clock far in the future)
    min_renew_interval: float = 600.0


def retry_after_of(details: str | None) -> float | None:
    """The pause a portal's admission refusal asks for (``retry_after=<seconds>`` in the
    status details), bounded to 0.1..60 s; None when it names none."""
    if not details:
        return None
    _, found, rest = details.partition("retry_after=")
    if not found:
        return None
    number = rest.split()[0].rstrip(";,s") if rest.split() else ""
    try:
        return min(60.0, max(0.1, float(number)))
    except ValueError:
        return None


class Backoff:
    """Exponential backoff with jitter: attempt n waits uniform(d/2, d), d = min(cap, base·2ⁿ)."""

    def __init__(self, base: float, cap: float, rng: random.Random) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base, self.cap, self.rng = base, cap, rng
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class CommandGate:
    """Decides whether a command may run: not seen before, not past its deadline (sans-I/O).

    Ids are remembered until their deadline has passed (after that the deadline check refuses
    them anyway), and at most ``capacity`` of them.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()

    def admit(self, command_id: str, deadline_unix_ms: int, now_unix_ms: int) -> str | None:
        """None if the command may run, else the refusal code."""
        for old_id, old_deadline in list(self._seen.items()):
            if old_deadline >= now_unix_ms:
                break
            del self._seen[old_id]
        if not command_id:
            return "bad_command"
        if command_id in self._seen:
            return "replayed_command"
        if deadline_unix_ms and deadline_unix_ms < now_unix_ms:
            return "command_expired"
        self._seen[command_id] = deadline_unix_ms or now_unix_ms + 3_600_000
        self._seen.move_to_end(command_id)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return None


class _Reconnect(Exception):
    """End this stream and connect again (renewed certificate, dead path)."""


class ControlClient:
    """Keeps the control stream up and runs the portal's commands (see the module docstring)."""

    def __init__(self, state: AgentState, handlers: Mapping[str, CommandHandler],
                 config: ClientConfig | None = None, *,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 rng: random.Random | None = None,
                 on_renewed: Callable[[], None] | None = None) -> None:
        self.data = state
        #: called after a renewed key and certificate were saved (e.g. to reload TLS contexts)
        self.on_renewed = on_renewed
        self.handlers = dict(handlers)
        self.config = config or ClientConfig()
        self.clock = clock
        self.backoff = Backoff(self.config.backoff_base, self.config.backoff_cap,
                               rng or random.Random())
        self.gate = CommandGate()
        self.connected = asyncio.Event()
        self.state = ClientState.IDLE
        self.last_error: str | None = None
        self.connects = 0
        self._outbox: deque[pb.AgentMessage] = deque()
        self._control: deque[pb.AgentMessage] = deque()
        self._wakeup = asyncio.Event()
        self._stop = asyncio.Event()
        self._skew_ms = 0
        self._renewal: asyncio.Future[pb.RenewResponse] | None = None
        self._renew_lock = asyncio.Lock()
        self._reconnect_now = False
        self._last_renewal: float | None = None
        self._cut = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._identity: AgentIdentity | None = None
        #: how portal names resolve (injected in tests)
        self.resolve: Resolver = system_resolver
        self._addresses: PortalAddresses | None = None
        self._was_up = False
        #: streams lost after a Welcome, each followed by a move to the next address
        self.failovers = 0
        #: seconds the portal asked the agent to wait before its next attempt (admission)
        self.retry_after: float | None = None

    # ------------------------------------------------------------------ lifecycle

    def _set(self, new: ClientState) -> None:
        if new is not self.state and new not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"control client: {self.state.value} -> {new.value} not allowed")
        self.state = new
        if new is not ClientState.CONNECTED:
            self.connected.clear()

    def stop(self) -> None:
        """Ask :meth:`run` to end (it returns after closing the stream)."""
        self._stop.set()
        self._wakeup.set()

    @property
    def identity(self) -> AgentIdentity | None:
        return self._identity

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff, until :meth:`stop`."""
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            self._set(ClientState.CONNECTING)
            started = loop.time()
            welcomed = False
            self._was_up = False
            address: HostPort | None = None
            try:
                self._identity = self.data.load()
                addresses = self._addresses_for(self._identity)
                address = addresses.current()
                welcomed = await self._session(self._identity, address)
                self.last_error = "the portal ended the stream"
            except _Reconnect as exc:
                self.last_error = str(exc)
            except grpc.aio.AioRpcError as exc:
                self.last_error = safe_text(f"{exc.code().name}: {exc.details()}")
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    self.retry_after = retry_after_of(exc.details())
                if exc.code() in (grpc.StatusCode.PERMISSION_DENIED,
                                  grpc.StatusCode.UNAUTHENTICATED):
                    log.error("the portal refuses this installation: %s",
                              safe_text(exc.details()))
            except (OSError, TimeoutError, ValueError, pki.PkiError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                self.connected.clear()
            if self._stop.is_set():
                break
            if self._reconnect_now:
                self._reconnect_now = False
                self.backoff.reset()
                log.info("reconnecting now: %s", self.last_error)
                continue
            if welcomed and loop.time() - started >= self.config.stable_after:
                self.backoff.reset()
            if (welcomed or self._was_up) and self._addresses is not None:
                # the replica held a stream and lost it: try the next one soon
                self._addresses.succeeded()
                self.failovers += 1
            round_over = self._addresses.advance() if self._addresses is not None else True
            delay = (self.backoff.next_delay() if round_over
                     else self.backoff.rng.uniform(0, min(1.0, 2 * self.backoff.base)))
            if self.retry_after is not None:  # the portal asked for a pause (admission)
                delay, self.retry_after = max(delay, self.retry_after), None
            log.warning("control stream to %s down (%s); reconnecting in %.1f s%s",
                        address, self.last_error, delay,
                        "" if round_over else " to the next portal address")
            self._set(ClientState.BACKOFF)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
        self._set(ClientState.STOPPED)
        for task in list(self._tasks):
            task.cancel()

    def _channel_options(self, identity: AgentIdentity) -> list[tuple[str, Any]]:
        options: list[tuple[str, Any]] = [
            ("grpc.ssl_target_name_override", identity.server_name),
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            # this loop does its own backoff; one attempt per channel
            ("grpc.initial_reconnect_backoff_ms", 1000),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        proxy = self.config.proxy
        options += proxy.grpc_options() if proxy else [("grpc.enable_http_proxy", 0)]
        return options

    def _addresses_for(self, identity: AgentIdentity) -> PortalAddresses:
        """The rotation over the identity's portal addresses (rebuilt when they change)."""
        wanted = identity.portal_addresses
        if self._addresses is None or self._addresses.configured != wanted:
            self._addresses = PortalAddresses(wanted, resolve=self.resolve,
                                              rng=self.backoff.rng)
        return self._addresses

    async def _session(self, identity: AgentIdentity, address: HostPort | None = None) -> bool:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=identity.ca_pem, private_key=identity.key_pem,
            certificate_chain=identity.cert_pem)
        target = str(address or identity.control_address)
        async with grpc.aio.secure_channel(target, credentials,
                                           options=self._channel_options(identity)) as channel:
            call = pb_grpc.ControlStub(channel).Connect()  # type: ignore[no-untyped-call]
            try:
                return await self._serve(call, identity)
            finally:
                call.cancel()

    async def _serve(self, call: Any, identity: AgentIdentity) -> bool:
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(call.write(pb.AgentMessage(hello=pb.Hello(
            installation_id=identity.installation_id, agent_version=self.config.agent_version,
            hostname=socket.gethostname(), capabilities=sorted(self.handlers),
            cert_serial=identity.serial))), self.config.connect_timeout)
        first = await asyncio.wait_for(call.read(), self.config.connect_timeout)
        if first is grpc.aio.EOF:
            await call  # raises the status the portal ended the stream with
            raise _Reconnect("the portal ended the stream without Welcome")
        if first.WhichOneof("body") != "welcome":
            raise _Reconnect("the portal did not answer Hello with Welcome")
        welcome = first.welcome
        self._was_up = True  # however the stream ends from here, this replica held it
        self._skew_ms = welcome.server_time_unix_ms - self._now_ms_local()
        interval = max(0.05, welcome.heartbeat_interval_ms / 1000 or 2.5)
        self.connects += 1
        self._control.clear()
        self._cut = asyncio.Event()
        self._set(ClientState.CONNECTED)
        self.connected.set()
        log.info("control stream up: installation %s at %s", identity.installation_id,
                 identity.control_address)
        last_rx = [loop.time()]
        tasks = [asyncio.create_task(self._reader(call, last_rx)),
                 asyncio.create_task(self._writer(call)),
                 asyncio.create_task(self._heartbeats(interval, last_rx)),
                 asyncio.create_task(self._renew_when_due(identity))]
        try:
            waiters = [asyncio.create_task(self._stop.wait()),
                       asyncio.create_task(self._cut.wait())]
            done, _ = await asyncio.wait([*tasks, *waiters], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if error is not None:
                    raise error
            if self._cut.is_set():
                raise _Reconnect("certificate renewed; reconnecting with the new one")
        finally:
            for task in [*tasks, *waiters]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return True

    # ------------------------------------------------------------------ stream tasks

    def _now_ms_local(self) -> int:
        return int(self.clock().timestamp() * 1000)

    def _portal_now_ms(self) -> int:
        return self._now_ms_local() + self._skew_ms

    async def _reader(self, call: Any, last_rx: list[float]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                await call  # raises the stream's error status, if any
                return
            last_rx[0] = loop.time()
            kind = message.WhichOneof("body")
            if kind == "command":
                self._on_command(message.command)
            elif (kind == "renewed" and self._renewal is not None
                  and not self._renewal.done()):
                self._renewal.set_result(message.renewed)

    async def _writer(self, call: Any) -> None:
        while True:
            if self._control:
                await call.write(self._control.popleft())
            elif self._outbox:
                await call.write(self._outbox[0])
                self._outbox.popleft()
            else:
                self._wakeup.clear()
                await self._wakeup.wait()

    async def _heartbeats(self, interval: float, last_rx: list[float]) -> None:
        loop = asyncio.get_running_loop()
        seq = 0
        while True:
            seq += 1
            self._send_control(pb.AgentMessage(heartbeat=pb.Heartbeat(
                seq=seq, sent_unix_ms=self._now_ms_local())))
            await asyncio.sleep(interval)
            if loop.time() - last_rx[0] > 3 * interval:
                raise _Reconnect(f"no message from the portal for {3 * interval:g} s")

    def _send_control(self, message: pb.AgentMessage) -> None:
        self._control.append(message)
        self._wakeup.set()

    def send_tunnel_report(self, *, session_id: str, kind: str, code: str, detail: str,
                           count: int, budget: str = "") -> None:
        """Queue a :class:`~ewsgate.agent.tunnel_reports.TunnelReport` for the portal (the
        ledger rate-limits them). Queued while the stream is down and sent when it is back,
        like command results."""
        if len(self._outbox) >= _MAX_OUTBOX:
            # bounded: a long outage must not grow memory for ever, and never at the expense
            # of a command result
            log.warning("control stream down too long: tunnel report on session %s dropped "
                        "(%s %s x%d)", session_id, kind, code, count)
            return
        self._outbox.append(pb.AgentMessage(tunnel_report=pb.TunnelReport(
            version=1, session_id=session_id, kind=kind, code=code, detail=detail,
            count=count, budget=budget, sent_unix_ms=self._now_ms_local())))
        self._wakeup.set()

    def report_session_failed(self, session_id: str, code: str, detail: str) -> None:
        """Tell the portal that the agent ended a session itself (e.g. the device failed a
        re-verification); queued like a result, so a reconnect does not lose it."""
        self._outbox.append(pb.AgentMessage(session_failed=pb.SessionFailed(
            session_id=session_id, code=code[:64], detail=detail[:2000])))
        self._wakeup.set()

    def _send_result(self, result: pb.CommandResult) -> None:
        self._outbox.append(pb.AgentMessage(result=result))
        self._wakeup.set()

    # ------------------------------------------------------------------ commands

    def _on_command(self, command: pb.Command) -> None:
        refusal = self.gate.admit(command.id, command.deadline_unix_ms, self._portal_now_ms())
        handler = self.handlers.get(command.kind)
        payload: Any = None
        if refusal is None and handler is None and command.kind != RENEW_KIND:
            refusal = "unknown_command"
        if refusal is None:
            try:
                payload = json.loads(command.payload_json or b"{}")
            except ValueError:
                payload = None
            if not isinstance(payload, dict):
                refusal = "bad_payload"
        if refusal is not None:
            log.warning("command %s (%s) refused: %s", safe_text(command.id, limit=64),
                        safe_text(command.kind, limit=64), refusal)
            self._send_result(pb.CommandResult(
                command_id=command.id, status=pb.CommandResult.REFUSED, error_code=refusal,
                error_message=_REFUSALS.get(refusal, refusal).format(kind=command.kind)))
            return
        deadline = dt.datetime.fromtimestamp(
            (command.deadline_unix_ms - self._skew_ms) / 1000, dt.UTC)

        def progress(stage: str, detail: str) -> None:
            self._send_control(pb.AgentMessage(progress=pb.CommandProgress(
                command_id=command.id, stage=stage, detail=detail)))

        context = CommandContext(id=command.id, kind=command.kind, payload=payload,
                                 deadline=deadline, progress=progress)
        task = asyncio.create_task(self._run_command(context, handler))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_command(self, context: CommandContext,
                           handler: CommandHandler | None) -> None:
        seconds = max(0.0, (context.deadline - self.clock()).total_seconds())
        try:
            if handler is None:  # RenewCertificate
                result = await asyncio.wait_for(self.renew(), seconds)
            else:
                result = await asyncio.wait_for(handler(context), seconds)
            body = json.dumps(result, separators=(",", ":")).encode()
            message = pb.CommandResult(command_id=context.id, status=pb.CommandResult.OK,
                                       payload_json=body)
        except CommandFailure as exc:
            message = pb.CommandResult(command_id=context.id, status=pb.CommandResult.FAILED,
                                       error_code=exc.code, error_message=str(exc))
        except TimeoutError:
            message = pb.CommandResult(command_id=context.id, status=pb.CommandResult.FAILED,
                                       error_code="deadline_exceeded",
                                       error_message=f"{context.kind} did not finish before "
                                       "its deadline")
        except Exception as exc:
            log.exception("command %s (%s) crashed", context.id, context.kind)
            message = pb.CommandResult(command_id=context.id, status=pb.CommandResult.FAILED,
                                       error_code="agent_error",
                                       error_message=f"{type(exc).__name__}: {exc}")
        self._send_result(message)

    # ------------------------------------------------------------------ renewal

    async def _renew_when_due(self, identity: AgentIdentity) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = identity.renew_at(self.config.renew_fraction)
            now = self.clock()
            recent = (self._last_renewal is not None and
                      loop.time() - self._last_renewal < self.config.min_renew_interval)
            if now >= due and not recent:
                try:
                    await self.renew()
                    return
                except (CommandFailure, TimeoutError) as exc:
                    log.error("certificate renewal failed (%s); retrying in %g s", exc,
                              self.config.renew_check_interval)
                    await asyncio.sleep(self.config.renew_check_interval)
                    continue
            wait = min(self.config.renew_check_interval, (due - now).total_seconds())
            await asyncio.sleep(max(0.01, wait))

    async def renew(self) -> dict[str, Any]:
        """Renew the certificate over the open stream, save it and reconnect with it."""
        async with self._renew_lock:
            identity = self._identity
            if identity is None or not self.connected.is_set():
                raise CommandFailure("not_connected", "renewal needs the control stream")
            key = pki.generate_key()
            request_id = secrets.token_hex(8)
            self._renewal = asyncio.get_running_loop().create_future()
            self._send_control(pb.AgentMessage(renew=pb.RenewRequest(
                request_id=request_id, csr_pem=pki.build_csr(key))))
            response = await asyncio.wait_for(self._renewal, 30)
            if response.error_code:
                raise CommandFailure(response.error_code, response.error_message)
            cert = pki.cert_from_pem(response.certificate_pem)
            ca = pki.cert_from_pem(identity.ca_pem)
            if not pki.is_issued_by(cert, ca) or cert.public_key() != key.public_key() or \
                    pki.installation_id_from_cert(cert) != identity.installation_id:
                raise CommandFailure("bad_certificate",
                                     "the renewed certificate is not for this key and "
                                     "installation from the portal's CA; kept the old one")
            self.data.save_renewal(pki.key_to_pem(key), response.certificate_pem, identity.ca_pem)
            self._last_renewal = asyncio.get_running_loop().time()
            if self.on_renewed is not None:
                try:
                    self.on_renewed()
                except Exception:
                    log.exception("after-renewal hook failed")
            log.info("certificate renewed: serial %s, valid until %s", pki.serial_hex(cert),
                     cert.not_valid_after_utc.isoformat())
            self._reconnect_now = True
            # cut the stream once the result (when this was a command) has had time to go out
            asyncio.get_running_loop().call_later(0.2, self._cut.set)
            return {"serial": pki.serial_hex(cert),
                    "not_after": cert.not_valid_after_utc.isoformat()}


_REFUSALS = {
    "replayed_command": "command id already seen; a replayed command is never run twice",
    "command_expired": "the command's deadline has passed",
    "unknown_command": "this agent has no handler for {kind}",
    "bad_payload": "the command's payload is not a JSON object",
    "bad_command": "the command has no id",
}
