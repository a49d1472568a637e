"""The portal's tables, as SQLAlchemy 2 declarative models.

Ownership runs down one chain, and every access check walks it upwards::

    Dealer ─┬─ Customer ─(parent_id, nested)─ Customer ─ Installation ─ Device
            ├─ User ─ RoleAssignment (dealer-wide, or one customer's subtree)
            │      ├─ ApiToken, WebSession
            └─ Relay (dealer-independent)       Job ─ JobLogEntry     RemoteSession

Models carry no relationships on purpose: the portal runs on asyncio, where an implicit lazy
load is an error, so every query is explicit in the service layer. Enumerated values are plain
strings validated by the service layer (the constants below are the single list of allowed
values). Secrets are stored hashed (tokens, relay secrets) or as argon2 hashes (passwords); the
SNMP credentials a device needs must reach the agent as given, so they are encrypted at rest
(:class:`~ewsgate.portal.store.sealed.SealedText`, keys in the portal's data directory).

The first migration creates every table; add columns in new migrations.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import true as sa_true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ewsgate.portal.store.sealed import SealedText
from ewsgate.portal.store.types import UTCDateTime

__all__ = [
    "DEVICE_MAKES",
    "ENROLMENT_PURPOSES",
    "IDENTITY_METHODS",
    "JOB_STATUSES",
    "NOTIFICATION_CHANNELS",
    "NOTIFICATION_STATUSES",
    "REMOTE_SESSION_STATUSES",
    "ROLES",
    "SESSION_MODES",
    "SESSION_REQUEST_STATUSES",
    "SNMP_VERSIONS",
    "ApiToken",
    "AuditEvent",
    "Base",
    "ControlCommand",
    "Customer",
    "CustomerContacts",
    "CustomerPolicy",
    "Dealer",
    "Device",
    "DevicePinEvent",
    "EnrolmentToken",
    "Installation",
    "InstallationRevocation",
    "Job",
    "JobLogEntry",
    "LoginFailure",
    "Notification",
    "Relay",
    "RemoteSession",
    "RoleAssignment",
    "SessionRequest",
    "SigningKeyRow",
    "TunnelReport",
    "User",
    "WebSession",
]

ROLES = ("administrator", "configurer", "user", "viewer", "approver")
#: a session request's life: pending → approved (→ used) | denied | expired
SESSION_REQUEST_STATUSES = ("pending", "approved", "denied", "expired", "used")
SESSION_MODES = ("full", "read-only")
DEVICE_MAKES = ("hp", "ricoh", "kyocera", "canon", "brother", "lexmark", "xerox", "konica",
                "sharp", "epson", "other")
IDENTITY_METHODS = ("mac", "serial")
SNMP_VERSIONS = ("2c", "3", "off")
JOB_STATUSES = ("queued", "running", "completed", "failed")
REMOTE_SESSION_STATUSES = ("verifying", "connecting", "ready", "ended", "failed")
#: ``enrol``: a first enrolment; ``replace``: an Administrator asked to replace the certificate
#: of an enrolled installation
ENROLMENT_PURPOSES = ("enrol", "replace")

# Stable constraint names, so that Alembic migrations work the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with the naming convention above."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class Dealer(Base):
    """A printer dealer: owns customers, users and their role assignments."""

    __tablename__ = "dealers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]


class Customer(Base):
    """A dealer's customer; ``parent_id`` nests customers (a tree, never a cycle)."""

    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dealer_id: Mapped[int] = mapped_column(ForeignKey("dealers.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]


class Installation(Base):
    """An on-site agent at a customer; enrols once, then keeps a gRPC control stream open."""

    __tablename__ = "installations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime | None]
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    #: serial number of the installation's current client certificate, lower-case hex
    cert_serial: Mapped[str | None] = mapped_column(String(64), index=True)
    cert_not_after: Mapped[datetime | None]
    #: ``x5t#S256`` of the current client certificate (tunnel tickets are bound to it)
    cert_thumbprint: Mapped[str | None] = mapped_column(String(64))
    agent_version: Mapped[str | None] = mapped_column(String(64))
    #: the site's device subnets (CIDR texts); when set, the agent reaches nothing outside them
    #: (nor outside its own ``--site-subnets``: the tighter list wins)
    site_subnets: Mapped[list[str] | None] = mapped_column(JSON)


class InstallationRevocation(Base):
    """An installation disabled, deleted or re-enrolled: relays refuse its earlier tickets.

    No foreign key: the row must outlive a deleted installation. Pruned once no ticket issued
    before ``revoked_at`` can still be valid (the longest session).
    """

    __tablename__ = "installation_revocations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    installation_id: Mapped[int] = mapped_column(Integer, index=True)
    revoked_at: Mapped[datetime] = mapped_column(index=True)
    reason: Mapped[str] = mapped_column(Text)
    #: the superseded certificate's ``x5t#S256``, when known
    thumbprint: Mapped[str | None] = mapped_column(String(64))


class EnrolmentToken(Base):
    """A one-time enrolment token for an installation (only its SHA-256 is stored).

    The rows are also the installation's enrolment history: who asked for each token and
    why (``purpose``), when it was used, and which certificate it replaced.
    """

    __tablename__ = "enrolment_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    installation_id: Mapped[int] = mapped_column(
        ForeignKey("installations.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    #: one of :data:`ENROLMENT_PURPOSES`
    purpose: Mapped[str] = mapped_column(String(16), default="enrol", server_default="enrol")
    created_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"))
    #: kept when the user is deleted
    created_by_email: Mapped[str | None] = mapped_column(String(320))
    #: set when a newer token for the same installation was issued before this one was used
    revoked_at: Mapped[datetime | None]
    #: the certificate this token's enrolment issued, and the one it replaced (``replace``)
    issued_cert_serial: Mapped[str | None] = mapped_column(String(64))
    replaced_cert_serial: Mapped[str | None] = mapped_column(String(64))


class Device(Base):
    """A printer (or other LAN device) reached through its installation."""

    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    installation_id: Mapped[int] = mapped_column(
        ForeignKey("installations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    make: Mapped[str] = mapped_column(String(32), default="other")
    model: Mapped[str] = mapped_column(String(200), default="")
    ip: Mapped[str] = mapped_column(String(64))
    hostname: Mapped[str | None] = mapped_column(String(253))
    #: normalised ``aa:bb:cc:dd:ee:ff``
    mac: Mapped[str | None] = mapped_column(String(17))
    serial: Mapped[str | None] = mapped_column(String(128))
    #: ``[{"scheme": "http"|"https", "port": int}, ...]``; the first is the landing page and a
    #: tunnel stream names a port by its index in this list
    ews_endpoints: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    identity_method: Mapped[str] = mapped_column(String(16), default="mac")
    snmp_version: Mapped[str] = mapped_column(String(8), default="2c")
    snmp_port: Mapped[int] = mapped_column(Integer, default=161)
    snmp_community: Mapped[str | None] = mapped_column(SealedText("devices.snmp_community"))
    snmp_v3_user: Mapped[str | None] = mapped_column(String(128))
    snmp_v3_auth_protocol: Mapped[str | None] = mapped_column(String(16))
    snmp_v3_auth_key: Mapped[str | None] = mapped_column(SealedText("devices.snmp_v3_auth_key"))
    snmp_v3_priv_protocol: Mapped[str | None] = mapped_column(String(16))
    snmp_v3_priv_key: Mapped[str | None] = mapped_column(SealedText("devices.snmp_v3_priv_key"))
    remote_technician_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    #: ``verified`` | ``mismatch`` | ``unknown`` from the last identity check, if any
    last_identity_result: Mapped[str | None] = mapped_column(String(16))
    last_identity_detail: Mapped[str | None] = mapped_column(Text)
    last_seen_mac: Mapped[str | None] = mapped_column(String(17))
    last_seen_serial: Mapped[str | None] = mapped_column(String(128))
    last_verified_at: Mapped[datetime | None]
    #: identity pins (second factor), learned at the first verified check (trust on first use):
    #: the SHA-256 of the EWS certificate (lower-case hex) and the on-link MAC; reset by an
    #: Administrator (see DevicePinEvent)
    pin_ews_cert_sha256: Mapped[str | None] = mapped_column(String(64))
    pin_mac: Mapped[str | None] = mapped_column(String(17))
    pins_learned_at: Mapped[datetime | None]

    @property
    def snmp_credentials_set(self) -> bool:
        """Whether an SNMP community or v3 key is stored (the API shows this, not the values)."""
        return bool(self.snmp_community or self.snmp_v3_auth_key or self.snmp_v3_priv_key)


class DevicePinEvent(Base):
    """A change of a device's identity pins: ``learned`` (first verified check), ``reset``
    (an Administrator, who is named) or ``mismatch`` (a check found other values). Kept when
    the device is deleted (``device_id`` NULL then)."""

    __tablename__ = "device_pin_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), index=True)
    dealer_id: Mapped[int] = mapped_column(ForeignKey("dealers.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    user_email: Mapped[str | None] = mapped_column(String(320))
    #: the pins before and after the change
    old_ews_cert_sha256: Mapped[str | None] = mapped_column(String(64))
    old_mac: Mapped[str | None] = mapped_column(String(17))
    new_ews_cert_sha256: Mapped[str | None] = mapped_column(String(64))
    new_mac: Mapped[str | None] = mapped_column(String(17))
    detail: Mapped[str | None] = mapped_column(Text)


class User(Base):
    """A person who logs into the portal; ``email`` is stored lower-case (unique)."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dealer_id: Mapped[int] = mapped_column(ForeignKey("dealers.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class RoleAssignment(Base):
    """``role`` for ``user_id`` over a dealer (``customer_id`` NULL) or a customer subtree."""

    __tablename__ = "role_assignments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    dealer_id: Mapped[int] = mapped_column(ForeignKey("dealers.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]


class ApiToken(Base):
    """A personal API token (``Authorization: Bearer``); only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]


class WebSession(Base):
    """A portal login (cookie); only the SHA-256 of the cookie value is stored."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: per-session secret; forms and cookie-authenticated API calls must echo it
    csrf_secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    user_agent: Mapped[str | None] = mapped_column(String(400))
    client_ip: Mapped[str | None] = mapped_column(String(64))


class Job(Base):
    """Work done on a device for a user (e.g. ``open_device_web_page``), with its outcome.

    ``dealer_id``/``customer_id`` are copied from the device when the job is created, so that
    the job stays visible to the right people after the device is deleted.
    """

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    dealer_id: Mapped[int] = mapped_column(ForeignKey("dealers.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True)
    device_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), index=True)
    device_name: Mapped[str | None] = mapped_column(String(200))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True)
    user_email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)


class JobLogEntry(Base):
    """One proxied request of a job (the Remote Technician Log); ``seq`` orders and dedupes."""

    __tablename__ = "job_log_entries"
    __table_args__ = (UniqueConstraint("job_id", "seq", name="uq_job_log_entries_job_id_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    user_email: Mapped[str | None] = mapped_column(String(320))
    method: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    status: Mapped[int | None] = mapped_column(Integer)
    bytes_in: Mapped[int] = mapped_column(Integer, default=0)
    bytes_out: Mapped[int] = mapped_column(Integer, default=0)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    #: the browser's address as the relay saw it (None for entries from older relays)
    client: Mapped[str | None] = mapped_column(String(64))


class Relay(Base):
    """A Remote Technician relay node; authenticates with ``id`` + a secret (stored hashed)."""

    __tablename__ = "relays"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    public_domain: Mapped[str] = mapped_column(String(253))
    public_port: Mapped[int | None] = mapped_column(Integer)
    #: ``HOST:PORT`` where agents reach the relay's tunnel listener
    tunnel_address: Mapped[str | None] = mapped_column(String(300))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime | None]
    #: the relay's last heartbeat (``POST /api/v1/relay/heartbeat``); NULL: it never sent one
    heartbeat_at: Mapped[datetime | None]
    #: what the last heartbeat said: ``serving``, ``draining`` or ``stopped``
    relay_state: Mapped[str | None] = mapped_column(String(16))
    #: while draining: when the relay ends the sessions still running on it
    drain_deadline: Mapped[datetime | None]


class RemoteSession(Base):
    """A Remote Technician session: one origin (``host``) on one relay, for one user."""

    __tablename__ = "remote_sessions"
    #: at least 128 bits of randomness, URL-safe (it appears in the session host name)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), index=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True)
    relay_id: Mapped[int | None] = mapped_column(ForeignKey("relays.id", ondelete="SET NULL"))
    host: Mapped[str] = mapped_column(String(253))
    url: Mapped[str] = mapped_column(Text)
    redirect_uri: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="verifying", index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    #: indexed: the relays' revocation streams read the sessions ended in the last seconds
    ended_at: Mapped[datetime | None] = mapped_column(index=True)
    #: the customer policy's mode for this session (``full`` or ``read-only``), for the relay
    mode: Mapped[str] = mapped_column(String(16), default="full", server_default="full")
    #: seconds without a browser request after which the relay ends the session
    idle_timeout_seconds: Mapped[int | None] = mapped_column(Integer)
    #: WebSockets allowed in a read-only session (the policy's ``allow_panel``)
    allow_panel: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())


class ControlCommand(Base):
    """A command sent down an installation's control stream; its id refuses replays.

    ``payload`` is stored with its secrets taken out (tickets as a SHA-256 digest, SNMP
    communities and keys not at all; :mod:`ewsgate.portal.control.redaction`), and finished
    commands are pruned after a retention period.
    """

    __tablename__ = "control_commands"
    __table_args__ = (Index("ix_control_commands_installation_status", "installation_id",
                            "status"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    installation_id: Mapped[int] = mapped_column(
        ForeignKey("installations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    completed_at: Mapped[datetime | None]


class TunnelReport(Base):
    """A relay's misbehaviour in a session, as the agent reported it (``TunnelReport`` on the
    control stream): a refused destination or stream, a tunnel protocol violation, or the
    agent cutting the relay. Recorded on the session's job; ``count`` occurrences per row."""

    __tablename__ = "tunnel_reports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str] = mapped_column(String(64))
    installation_id: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(32))
    budget: Mapped[str | None] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(Integer, default=1)
    detail: Mapped[str | None] = mapped_column(Text)


#: how a notification travels; what state its delivery is in (``sending``: claimed by a worker
#: until ``next_attempt_at``, then claimable again)
NOTIFICATION_CHANNELS = ("email", "webhook")
NOTIFICATION_STATUSES = ("pending", "sending", "delivered", "failed")


class CustomerContacts(Base):
    """Who hears of a customer's Remote Technician sessions: e-mail addresses and a signed
    webhook (its secret sealed with the keyring, shown once when set)."""

    __tablename__ = "customer_contacts"
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    emails: Mapped[list[str]] = mapped_column(JSON, default=list)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str | None] = mapped_column(
        SealedText("customer_contacts.webhook_secret"))
    updated_at: Mapped[datetime]


class Notification(Base):
    """One delivery in the notification outbox: an event (``kind``) for one recipient over one
    channel, written in the transaction of the change it tells of, delivered by the worker."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_status_next_attempt_at", "status",
                            "next_attempt_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dealer_id: Mapped[int] = mapped_column(ForeignKey("dealers.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    #: an e-mail address or the webhook's URL
    target: Mapped[str] = mapped_column(Text)
    #: the customer whose contacts named ``target`` (its webhook secret signs the delivery)
    source_customer_id: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class AuditEvent(Base):
    """One entry of the audit trail: who did what to which object, when, from where, and the
    changed fields before → after (secrets redacted; see ``services/audit.py``).

    Append-only: no code path updates or deletes a row, and triggers (migration 0008) make the
    database refuse UPDATE and DELETE. No foreign keys on purpose: an entry outlives the user,
    customer or device it names, and a cascade would be a delete.
    """

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_target", "target_type", "target_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    #: whose trail it is: the dealer, and the customer the target belongs to (scoped viewing)
    dealer_id: Mapped[int | None] = mapped_column(Integer, index=True)
    customer_id: Mapped[int | None] = mapped_column(Integer, index=True)
    #: ``user`` | ``relay`` | ``installation`` | ``system``
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    #: the user's e-mail, or the relay's / installation's name
    actor_label: Mapped[str | None] = mapped_column(String(320), index=True)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    before_state: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after_state: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    detail: Mapped[str | None] = mapped_column(Text)


class LoginFailure(Base):
    """A failed (or in-progress) login attempt for one key, shared by every portal replica
    (``ewsgate.portal.login_limits``); rows past the failure window and lockout are deleted."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_failed_at", "key", "failed_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(400))
    failed_at: Mapped[datetime] = mapped_column(index=True)


class SigningKeyRow(Base):
    """An ES256 signing key shared by every portal replica (``ewsgate.portal.oauth.key_sync``):
    the private JWK as JSON, created and (once) retired."""

    __tablename__ = "signing_keys"
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]
    jwk: Mapped[str] = mapped_column(Text)


class CustomerPolicy(Base):
    """A customer's own Remote Technician policy (:mod:`ewsgate.portal.policy`); its children
    inherit it and may only tighten it. ``settings`` is the policy's JSON form."""

    __tablename__ = "customer_policies"
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str | None] = mapped_column(String(320))


class SessionRequest(Base):
    """A request to open a session on a device that needs a Customer Approver's answer (or
    that carried a reason); approval is for one session, by a named person."""

    __tablename__ = "session_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dealer_id: Mapped[int] = mapped_column(ForeignKey("dealers.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True)
    device_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), index=True)
    device_name: Mapped[str | None] = mapped_column(String(200))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True)
    user_email: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    ticket: Mapped[str | None] = mapped_column(String(200))
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(320))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    session_id: Mapped[str | None] = mapped_column(String(64))
