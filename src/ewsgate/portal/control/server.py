"""The portal's gRPC control server: mTLS ``Control`` streams and the ``Enrolment`` port.

One ``grpc.aio`` server, two ports::

    --grpc-listen   mutual TLS (ssl_server_credentials(require_client_auth=True), root = the
                    portal CA): a client without a certificate, with a certificate of another CA
                    or with an expired one fails the TLS handshake (the client sees UNAVAILABLE).
    --enrol-listen  server TLS only, for agents that have no certificate yet. ``Connect`` on this
                    port has no peer certificate and is refused (UNAUTHENTICATED); ``Enroll`` is
                    the only call that works here.

grpcio's server credentials cannot make a client certificate optional per method, hence the two
ports. Both present the same server certificate, issued by the CA at start-up for the fixed name
:data:`SERVER_NAME` (which agents verify, pinning the CA) plus the listen hosts and loopback.

A ``Connect`` stream, in the servicer:

1. identity from the TLS peer certificate only (``auth_context()["x509_pem_cert"]``): the
   installation id in its URI SAN, its serial and expiry;
2. :meth:`ControlRecords.authorize`: exists, enabled, current serial (or a renewal adopted now);
3. the first message must be ``Hello``; a Hello claiming another installation is refused;
4. ``Welcome``; then a reader task handles heartbeats, progress, results and renewals (each
   message re-checks a closing flag that the hub's sweep sets from the database, and results
   and renewals are checked against the database directly), while the handler writes what the
   hub hands it, until the stream ends or the hub closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ewsgate import pki
from ewsgate.portal.control.admission import AdmissionConfig, ConnectAdmission
from ewsgate.portal.control.enrolment import EnrolmentServicer, EnrolmentSettings
from ewsgate.portal.control.hub import Connection, ControlHub, HubConfig
from ewsgate.portal.control.records import ControlRecords, Refusal
from ewsgate.portal.control.retention import CommandRetention, run_pruner
from ewsgate.portal.control.session_reports import SessionReports
from ewsgate.portal.control.tunnel_reports import TunnelReportSink
from ewsgate.portal.store.db import Database
from ewsgate.proto import control_pb2 as pb
from ewsgate.proto import control_pb2_grpc as pb_grpc
from ewsgate.revocations import cert_thumbprint
from ewsgate.textsafe import safe_text

__all__ = ["MAX_PENDING_CALLS", "SERVER_NAME", "ControlServer", "ControlServerConfig",
           "peer_certificate", "server_options"]

log = logging.getLogger(__name__)

#: the DNS name every portal control certificate carries and agents verify
SERVER_NAME = pki.PORTAL_SERVER_NAME
HELLO_TIMEOUT = 10.0
_MAX_MESSAGE = 1 << 20
#: how many arrived ``Connect`` calls may wait for the Python server to pick them up; see
#: :func:`server_options`
MAX_PENDING_CALLS = 20_000


@dataclass(frozen=True, slots=True)
class ControlServerConfig:
    """Where to listen and how long things live."""

    listen: str = "127.0.0.1:0"
    #: None: no enrolment port
    enrol_listen: str | None = "127.0.0.1:0"
    #: HOST:PORT agents should dial for the control stream (told to them at enrolment)
    advertise: str = ""
    #: extra DNS names / IPs for the server certificate
    server_names: tuple[str, ...] = ()
    cert_lifetime: dt.timedelta = pki.CLIENT_CERT_LIFETIME
    hub: HubConfig = field(default_factory=HubConfig)
    commands: CommandRetention = field(default_factory=CommandRetention)
    #: streams admitted per second (token bucket on Connect, see .admission)
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)


def peer_certificate(context: grpc.aio.ServicerContext[object, object]) -> x509.Certificate | None:
    """The client certificate the TLS layer verified, or None (no mTLS on this port)."""
    pems = context.auth_context().get("x509_pem_cert") or []
    if not pems:
        return None
    try:
        return x509.load_pem_x509_certificate(pems[0])
    except ValueError:
        return None


def _host_of(address: str) -> str:
    host = address.rsplit(":", 1)[0]
    return host[1:-1] if host.startswith("[") else host


def _names(hosts: Iterable[str]) -> tuple[list[str], list[str]]:
    dns, ips = [SERVER_NAME, "localhost"], ["127.0.0.1", "::1"]
    for host in hosts:
        if not host or host in ("0.0.0.0", "::", "*"):
            continue
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if host not in dns:
                dns.append(host)
        else:
            if host not in ips:
                ips.append(host)
    return dns, ips


def server_options() -> list[tuple[str, int]]:
    """The gRPC server's channel arguments: keepalive, message size, pending calls.

    A reconnect storm (every agent at once after a portal restart) brings thousands of
    ``Connect`` calls faster than the asyncio server picks them up. With grpc's defaults
    (1000 pending calls, rejections growing to all of them at 3000) the core cancelled the
    rest, the agents saw CANCELLED or "Internal error from Core" and each retried with a new
    TLS handshake: more work on both ends, not less (3000 agents at once on the 2-core bench
    machine: 1012 failed attempts before, none after). :data:`MAX_PENDING_CALLS` is above the
    10,000 streams one portal process is measured to hold (docs/control-channel.md). A call
    that waits longer than grpc's default 30 s is still dropped; an agent gives up on its own
    after 10 s.
    """
    return [
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.max_receive_message_length", _MAX_MESSAGE),
        ("grpc.max_concurrent_streams", 8),
        ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
        ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
    ]


class ControlServicer(pb_grpc.ControlServicer):
    """The ``Control`` service: one long-lived stream per installation."""

    def __init__(self, hub: ControlHub, ca: pki.CertificateAuthority,
                 cert_lifetime: dt.timedelta, reports: TunnelReportSink | None = None,
                 session_reports: SessionReports | None = None) -> None:
        self.hub = hub
        #: where agents' tunnel reports are recorded (None: logged and dropped)
        self.reports = reports
        #: where agents' own session failures are recorded (None: ignored)
        self.session_reports = session_reports
        self.records = hub.records
        self.ca = ca
        self.cert_lifetime = cert_lifetime
        #: the reconnect-storm guard (replaced by ControlServer with its configured rate)
        self.admission = ConnectAdmission(AdmissionConfig(), time.monotonic())

    async def Connect(self, request_iterator: object,
                      context: grpc.aio.ServicerContext[pb.AgentMessage, pb.PortalMessage],
                      ) -> None:
        cert = peer_certificate(context)
        if cert is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "no client certificate: the control stream needs mutual TLS; "
                                "this is the enrolment port")
            return
        ident = pki.installation_id_from_cert(cert)
        if ident is None or not ident.isdigit() or not pki.is_issued_by(cert, self.ca.cert):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "the client certificate names no installation of this portal")
            return
        installation_id, serial = int(ident), pki.serial_hex(cert)
        if context.done() or (context.time_remaining() or 1.0) <= 0:
            return  # the agent gave up while the call queued: no work for it
        decision = self.admission.decide(time.monotonic())
        if not decision.admitted:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"busy: this portal admits {self.admission.config.rate:g} "
                                "control streams per second and is taking a reconnect storm; "
                                f"retry_after={decision.retry_after:g}")
            return
        try:
            await self.records.authorize(
                installation_id, serial, cert.not_valid_after_utc,
                thumbprint=cert_thumbprint(cert.public_bytes(serialization.Encoding.DER)))
        except Refusal as refusal:
            log.info("stream of installation %s refused: %s", installation_id, refusal.message)
            await context.abort(grpc.StatusCode[refusal.status], f"{refusal.code}: {refusal}")
            return
        try:
            first = await asyncio.wait_for(context.read(), HELLO_TIMEOUT)
        except TimeoutError:
            first = None
        if not isinstance(first, pb.AgentMessage) or first.WhichOneof("body") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "protocol_error: the first message must be Hello")
            return
        hello = first.hello
        if hello.installation_id and hello.installation_id != ident:
            claimed = safe_text(hello.installation_id, limit=64)
            log.warning("installation %s claimed to be installation %s; refused",
                        installation_id, claimed)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"identity_mismatch: the message claims installation "
                                f"{claimed} but the certificate names "
                                f"installation {ident}; identity comes from the certificate")
            return
        loop = asyncio.get_running_loop()
        connection = Connection(installation_id=installation_id, cert_serial=serial,
                                peer=context.peer(), connected_at=loop.time(),
                                last_message_at=loop.time(), task=asyncio.current_task())
        agent_version = safe_text(hello.agent_version, limit=64) or None
        await self.hub.attach(connection, agent_version)
        log.info("installation %s online from %s (agent %s)", installation_id, context.peer(),
                 agent_version or "?")
        connection.push(pb.PortalMessage(welcome=pb.Welcome(
            installation_id=ident,
            heartbeat_interval_ms=int(self.hub.config.heartbeat_interval * 1000),
            server_time_unix_ms=int(self.hub.clock().timestamp() * 1000))))
        reader = asyncio.create_task(self._read(connection, context))
        try:
            await self._write(connection, context, reader)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            await self.hub.detach(connection)
            log.info("installation %s offline (%s)", installation_id,
                     connection.closing.code if connection.closing else "stream ended")

    async def _write(self, connection: Connection,
                     context: grpc.aio.ServicerContext[pb.AgentMessage, pb.PortalMessage],
                     reader: asyncio.Task[None]) -> None:
        while True:
            if connection.closing is not None:
                refusal = connection.closing
                await context.abort(grpc.StatusCode[refusal.status],
                                    f"{refusal.code}: {refusal.message}")
                return
            item = self.hub.take(connection)
            if item is None:
                if reader.done():
                    return
                connection.wakeup.clear()
                await connection.wakeup.wait()
                continue
            message, command_id = item
            try:
                await context.write(message)
            except BaseException:
                if command_id is not None:
                    self.hub.sent(command_id, written=False)
                raise
            if command_id is not None:
                self.hub.sent(command_id, written=True)

    async def _read(self, connection: Connection,
                    context: grpc.aio.ServicerContext[pb.AgentMessage, pb.PortalMessage]) -> None:
        loop = asyncio.get_running_loop()
        try:
            while connection.closing is None:
                message = await context.read()
                if message is grpc.aio.EOF or not isinstance(message, pb.AgentMessage):
                    return
                connection.last_message_at = loop.time()
                if connection.closing is not None:
                    return
                await self._dispatch(connection, message)
        except Refusal as refusal:
            connection.close(refusal)
        except (grpc.RpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            return
        finally:
            connection.wakeup.set()

    async def _dispatch(self, connection: Connection, message: pb.AgentMessage) -> None:
        kind = message.WhichOneof("body")
        if kind == "heartbeat":
            connection.push(pb.PortalMessage(heartbeat=message.heartbeat))
        elif kind == "progress":
            self.hub.on_progress(connection, message.progress)
        elif kind == "result":
            await self.records.recheck(connection.installation_id, connection.cert_serial)
            self.hub.on_result(connection, message.result)
        elif kind == "tunnel_report":
            if self.reports is not None:
                await self.reports.record(connection.installation_id, message.tunnel_report)
        elif kind == "session_failed" and self.session_reports is not None:
            await self.records.recheck(connection.installation_id, connection.cert_serial)
            report = message.session_failed
            await self.session_reports.session_failed(connection.installation_id, report.session_id,
                                              report.code, report.detail)
        elif kind == "renew":
            current_not_after = await self.records.recheck(connection.installation_id,
                                                           connection.cert_serial)
            connection.push(pb.PortalMessage(renewed=self._renew(
                connection, message.renew, current_not_after)))
        else:
            raise Refusal("protocol_error", "INVALID_ARGUMENT",
                          f"unexpected {kind or 'empty'} message on an open stream")

    def _renew(self, connection: Connection, request: pb.RenewRequest,
               current_not_after: dt.datetime | None) -> pb.RenewResponse:
        now = self.hub.clock().replace(microsecond=0)  # certificates count whole seconds
        lifetime = self.cert_lifetime
        if current_not_after is not None and now + lifetime <= current_not_after:
            # the new certificate must expire later than the current one: that is how the
            # portal recognises it as newer when it is first used (see records.py)
            lifetime = current_not_after - now + dt.timedelta(seconds=1)
        try:
            cert = self.ca.sign_installation_csr(
                request.csr_pem, installation_id=connection.installation_id,
                now=now, lifetime=lifetime)
        except pki.PkiError as exc:
            return pb.RenewResponse(request_id=request.request_id, error_code=exc.code,
                                    error_message=str(exc))
        log.info("installation %s renewed its certificate: %s -> %s (adopted on first use)",
                 connection.installation_id, connection.cert_serial, pki.serial_hex(cert))
        return pb.RenewResponse(request_id=request.request_id,
                                certificate_pem=pki.cert_to_pem(cert),
                                ca_certificate_pem=self.ca.cert_pem)


class ControlServer:
    """The gRPC server with both ports, the hub and its sweeper. ``start()`` then ``stop()``.

    It is a background service of the portal process (``name``, ``start``, ``stop``).
    """

    name = "control server (gRPC)"

    def __init__(self, config: ControlServerConfig, *, database: Database,
                 ca: pki.CertificateAuthority, clock: Callable[[], dt.datetime]) -> None:
        self.config = config
        self.ca = ca
        self.clock = clock
        self.records = ControlRecords(database)
        self.hub = ControlHub(self.records, config=config.hub, clock=clock)
        self.port = 0
        self.enrol_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._presence: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._database = database

    def _enrolment_settings(self) -> EnrolmentSettings:
        return EnrolmentSettings(cert_lifetime=self.config.cert_lifetime, control_port=self.port,
                                 control_address=self.config.advertise, server_name=SERVER_NAME)

    async def start(self) -> None:
        """Issue the server certificate, bind both ports, start serving and sweeping."""
        hosts = [_host_of(self.config.listen), *self.config.server_names]
        if self.config.enrol_listen:
            hosts.append(_host_of(self.config.enrol_listen))
        if self.config.advertise:
            hosts.append(_host_of(self.config.advertise))
        dns, ips = _names(hosts)
        issued = self.ca.issue_server_cert(dns_names=dns, ip_addresses=ips, now=self.clock(),
                                           common_name=SERVER_NAME)
        chain = issued.cert_pem + self.ca.cert_pem
        server = grpc.aio.server(options=server_options())
        servicer = ControlServicer(self.hub, self.ca, self.config.cert_lifetime,
                                   TunnelReportSink(self._database, clock=self.clock,
                                                    monotonic=time.monotonic),
                                   SessionReports(self._database, self.clock))
        servicer.admission = ConnectAdmission(self.config.admission, time.monotonic())
        #: the Connect token bucket (its counters: admitted, refused)
        self.admission = servicer.admission
        pb_grpc.add_ControlServicer_to_server(  # type: ignore[no-untyped-call]
            servicer, server)
        pb_grpc.add_EnrolmentServicer_to_server(  # type: ignore[no-untyped-call]
            EnrolmentServicer(self._database, self.ca, self._enrolment_settings, self.clock,
                              on_replaced=self._certificate_replaced),
            server)
        mtls = grpc.ssl_server_credentials([(issued.key_pem, chain)],
                                           root_certificates=self.ca.cert_pem,
                                           require_client_auth=True)
        self.port = server.add_secure_port(self.config.listen, mtls)
        if self.config.enrol_listen:
            tls = grpc.ssl_server_credentials([(issued.key_pem, chain)])
            self.enrol_port = server.add_secure_port(self.config.enrol_listen, tls)
        await server.start()
        self._server = server
        self._sweeper = asyncio.create_task(self.hub.run_sweeper())
        self._presence = asyncio.create_task(self.hub.run_presence_writer())
        self._pruner = asyncio.create_task(run_pruner(self.records, self.config.commands,
                                                      self.hub.clock))
        log.info("control server on %s (mTLS), enrolment on %s", self.port, self.enrol_port)

    def _certificate_replaced(self, installation_id: int, previous: str) -> None:
        """A re-enrolment replaced ``previous``: its live stream ends now, not at the sweep."""
        self.hub.disconnect(installation_id, "this installation's certificate was replaced by "
                            "a new enrolment; this agent must be enrolled again",
                            cert_serial=previous)

    async def stop(self, grace: float = 2.0) -> None:
        """Close every stream (agents reconnect elsewhere or later) and stop serving."""
        for task in (self._sweeper, self._presence, self._pruner):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.hub.close_all()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        with contextlib.suppress(Exception):
            await self.hub.flush_presence()
