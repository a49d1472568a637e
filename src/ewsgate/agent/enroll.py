"""``ewsgate agent enroll``: turn a one-time token into the installation's certificate.

::

    token "<secret>.<ca-pin>"
      1. TLS to the enrolment port without verification, read the certificate chain it presents
         and keep the CA certificate whose SHA-256 is <ca-pin> (else stop: wrong portal or an
         interception — the secret has not been sent anywhere yet);
      2. generate a P-256 key here and a CSR for it (the key never leaves this machine);
      3. gRPC Enrolment.Enroll(secret, CSR) over TLS verified against that CA only;
      4. check the answer (issued by the CA, for our key, naming one installation) and save
         key, certificate, CA and the control address in the data directory.

Both connections go through the HTTP CONNECT proxy when one is configured.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ewsgate import pki
from ewsgate.agent.proxy import ProxyConfig, open_tunnel
from ewsgate.agent.state import AgentIdentity, AgentState
from ewsgate.config import HostPort
from ewsgate.proto import control_pb2 as pb
from ewsgate.proto import control_pb2_grpc as pb_grpc

__all__ = ["EnrolError", "EnrolOptions", "enroll", "fetch_server_chain"]


class EnrolError(Exception):
    """Enrolment failed; ``code`` is stable, the message says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class EnrolOptions:
    portal: HostPort
    token: str
    agent_version: str
    proxy: ProxyConfig | None = None
    timeout: float = 20.0


def fetch_server_chain(address: HostPort, proxy: ProxyConfig | None,
                       timeout: float) -> list[x509.Certificate]:
    """The certificates a TLS server presents, unverified (blocking; run it in a thread)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    raw = open_tunnel(address.host, address.port, proxy, timeout)
    try:
        with context.wrap_socket(raw, server_hostname=pki.PORTAL_SERVER_NAME) as tls:
            getter = getattr(tls, "get_unverified_chain", None)  # public from Python 3.13
            if getter is None:  # 3.11/3.12: the same method on the private SSL object
                getter = getattr(tls, "_sslobj").get_unverified_chain  # noqa: B009
            chain = getter() or []
            der = getattr(ssl, "_ssl").ENCODING_DER  # noqa: B009
            ders = [item if isinstance(item, bytes) else item.public_bytes(der)
                    for item in chain]
    finally:
        raw.close()
    return [x509.load_der_x509_certificate(der) for der in ders]


def _pinned_ca(chain: list[x509.Certificate], pin: str, portal: HostPort) -> x509.Certificate:
    for cert in chain:
        if pki.ca_pin(cert) == pin:
            return cert
    raise EnrolError("enrol.ca_pin_mismatch",
                     f"the server at {portal} presented no CA certificate matching the token's "
                     "CA pin: this is not the portal that issued the token, or something "
                     "intercepts the connection. Check --portal (the portal's enrolment port) "
                     "and the proxy; the token was not sent")


async def enroll(options: EnrolOptions, state: AgentState) -> AgentIdentity:
    """Enrol with the portal and save the identity in ``state``'s data directory."""
    secret, pin = pki.split_enrolment_token(options.token)
    if not secret or not pin:
        raise EnrolError("enrol.bad_token",
                         "the token must be the whole text the portal showed, "
                         "<secret>.<ca-pin> (with the dot); create a new token if unsure")
    try:
        chain = await asyncio.to_thread(fetch_server_chain, options.portal, options.proxy,
                                        options.timeout)
    except (OSError, ssl.SSLError) as exc:
        raise EnrolError("enrol.unreachable",
                         f"cannot open TLS to the portal's enrolment port {options.portal}: "
                         f"{exc}. Check the address, the firewall and --proxy") from None
    ca_cert = _pinned_ca(chain, pin, options.portal)
    ca_pem = pki.cert_to_pem(ca_cert)
    key = pki.generate_key()
    request = pb.EnrollRequest(token=secret, csr_pem=pki.build_csr(key),
                               agent_version=options.agent_version,
                               hostname=socket.gethostname())
    channel_options: list[tuple[str, object]] = [
        ("grpc.ssl_target_name_override", pki.PORTAL_SERVER_NAME)]
    channel_options += (options.proxy.grpc_options() if options.proxy
                        else [("grpc.enable_http_proxy", 0)])
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    async with grpc.aio.secure_channel(str(options.portal), credentials,
                                       options=channel_options) as channel:
        stub = pb_grpc.EnrolmentStub(channel)  # type: ignore[no-untyped-call]
        try:
            response = await stub.Enroll(request, timeout=options.timeout)
        except grpc.aio.AioRpcError as exc:
            details = exc.details() or ""
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise EnrolError("enrol.unavailable",
                                 f"the portal at {options.portal} did not take the enrolment "
                                 f"({details}); check that --portal is the portal's enrolment "
                                 "port (its --enrol-listen, by default the gRPC port + 1), "
                                 "not the control port") from None
            code = details.split(":", 1)[0] if ":" in details else exc.code().name.lower()
            raise EnrolError(f"enrol.{code}",
                             f"the portal refused the enrolment ({exc.code().name}): "
                             f"{details}") from None
    cert = pki.cert_from_pem(response.certificate_pem)
    if not pki.is_issued_by(cert, ca_cert) or cert.public_key() != key.public_key() or \
            pki.installation_id_from_cert(cert) != response.installation_id:
        raise EnrolError("enrol.bad_answer",
                         "the portal's answer is not a certificate for this key from its CA; "
                         "nothing was saved")
    control = (HostPort(options.portal.host, response.control_port)
               if not response.control_address else _parse_address(response.control_address))
    identity = AgentIdentity(
        installation_id=response.installation_id,
        key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
        cert_pem=pki.cert_to_pem(cert), ca_pem=ca_pem, control_address=control,
        server_name=response.server_name or pki.PORTAL_SERVER_NAME)
    state.save_enrolment(identity)
    return identity


def _parse_address(text: str) -> HostPort:
    from ewsgate.config import parse_host_port

    try:
        return parse_host_port(text)
    except ValueError as exc:
        raise EnrolError("enrol.bad_answer", f"the portal named a bad control address "
                         f"{text!r}: {exc}") from None
