"""Enrolment: a one-time token and a CSR in, the installation's client certificate out.

The token an administrator is shown has two parts, ``<secret>.<ca-pin>``
(:func:`ewsgate.pki.compose_enrolment_token`):

* ``<secret>`` is the one-time token of :mod:`ewsgate.portal.services.installations`
  (``ewse_…``, 256 random bits, stored as SHA-256, single use, 24 h);
* ``<ca-pin>`` is the SHA-256 of the portal CA's certificate, base64url without padding.

The agent has no certificate and no CA yet when it enrols, so it cannot verify the portal's TLS
certificate the usual way. It reads the certificate chain the enrolment port presents, keeps the
CA certificate whose hash is the pin, and only then opens the gRPC call with that CA as its only
root. A man in the middle therefore never sees the secret. The pin is public information (the
CA certificate is not secret); only the ``<secret>`` part is sent to the portal.

:class:`EnrolmentServicer` redeems the secret, signs the CSR with the CA (the CA writes the
installation id into the certificate; nothing of the CSR's subject is kept) and records the
certificate's serial and expiry as the installation's current certificate — all in one
transaction, so a refused CSR leaves the token unused.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate import pki
from ewsgate.portal.services import audit
from ewsgate.portal.services.errors import AuthenticationFailed
from ewsgate.portal.services.installations import record_enrolment, redeem_enrolment_token
from ewsgate.portal.sessions.revocation import certificate_replaced
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.models import Customer
from ewsgate.proto import control_pb2 as pb
from ewsgate.proto import control_pb2_grpc as pb_grpc
from ewsgate.revocations import cert_thumbprint
from ewsgate.textsafe import safe_text

__all__ = ["EnrolmentServicer", "EnrolmentSettings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EnrolmentSettings:
    """What the enrolment answer tells the agent about the control server."""

    cert_lifetime: dt.timedelta
    control_port: int
    #: HOST:PORT agents should dial for the control stream; empty: the host they enrolled with
    control_address: str
    server_name: str


class EnrolmentServicer(pb_grpc.EnrolmentServicer):
    """The ``Enrolment`` service (served on the server-TLS-only enrolment port)."""

    def __init__(self, database: Database, ca: pki.CertificateAuthority,
                 settings: Callable[[], EnrolmentSettings],
                 clock: Callable[[], dt.datetime],
                 on_replaced: Callable[[int, str], object] | None = None) -> None:
        self.database = database
        self.ca = ca
        self.settings = settings
        self.clock = clock
        #: called with (installation id, replaced serial) after a replacement is committed
        self.on_replaced = on_replaced

    async def Enroll(self, request: pb.EnrollRequest,
                     context: grpc.aio.ServicerContext[pb.EnrollRequest, pb.EnrollResponse],
                     ) -> pb.EnrollResponse:
        secret, _pin = pki.split_enrolment_token(request.token)
        settings = self.settings()
        now = self.clock()
        failure: tuple[grpc.StatusCode, str] | None = None
        response = pb.EnrollResponse()
        replacing: str | None = None
        try:
            async with self.database.transaction() as session:
                redemption = await redeem_enrolment_token(session, secret, clock=self.clock)
                installation = redemption.installation
                replacing = installation.cert_serial
                superseded_thumbprint = installation.cert_thumbprint
                cert = self.ca.sign_installation_csr(
                    request.csr_pem, installation_id=installation.id, now=now,
                    lifetime=settings.cert_lifetime)
                await record_enrolment(session, redemption, cert_serial=pki.serial_hex(cert),
                                       cert_not_after=cert.not_valid_after_utc,
                                       clock=self.clock)
                installation.cert_thumbprint = cert_thumbprint(
                    cert.public_bytes(serialization.Encoding.DER))
                if replacing is not None:
                    # a re-enrolment: relays refuse the old certificate and its tickets
                    await certificate_replaced(session, installation.id, superseded_thumbprint,
                                               now)
                if request.agent_version:
                    installation.agent_version = safe_text(request.agent_version, limit=64)
                await audit.record(
                    session, "installation.enrol",
                    actor=audit.Principal.installation(installation.id, installation.name),
                    target_id=installation.id, customer_id=installation.customer_id,
                    dealer_id=await _dealer_of(session, installation.customer_id),
                    after=audit.snapshot(installation, "cert_serial", "cert_not_after",
                                         "agent_version"),
                    detail=("re-enrolled, replacing certificate " + replacing + "; "
                            if replacing else "") + f"host "
                    f"{safe_text(request.hostname, limit=100)}, peer {context.peer()}",
                    clock=self.clock)
                response = pb.EnrollResponse(
                    installation_id=str(installation.id),
                    certificate_pem=pki.cert_to_pem(cert),
                    ca_certificate_pem=self.ca.cert_pem,
                    control_address=settings.control_address,
                    control_port=settings.control_port,
                    server_name=settings.server_name)
                log.info("installation %s %s (certificate %s%s, host %s, peer %s)",
                         installation.id,
                         "re-enrolled" if replacing else "enrolled", installation.cert_serial,
                         f", replacing {replacing}, requested by "
                         f"{redemption.record.created_by_email or 'unknown'}"
                         if replacing else "",
                         safe_text(request.hostname, limit=100), context.peer())
        except AuthenticationFailed as exc:
            failure = (grpc.StatusCode.UNAUTHENTICATED, f"{exc.code}: {exc.message}")
        except pki.PkiError as exc:
            failure = (grpc.StatusCode.INVALID_ARGUMENT, f"{exc.code}: {exc}")
        if failure is not None:
            log.info("enrolment refused from %s: %s", context.peer(), failure[1])
            await context.abort(*failure)
        elif replacing and self.on_replaced is not None:
            self.on_replaced(int(response.installation_id), replacing)
        return response


async def _dealer_of(session: AsyncSession, customer_id: int) -> int | None:
    return await session.scalar(select(Customer.dealer_id).where(Customer.id == customer_id))
