"""Request and response bodies of the REST API (pydantic), as the OpenAPI document shows them.

Request models forbid unknown fields (a typo is an error, 422 ``unknown_field``, never silently
ignored) and only check JSON types; value rules (IP syntax, port ranges, roles, cycles) live in
the service layer, so the web UI and the API give the same answers. Update models are partial:
only the fields sent are changed (``exclude_unset``).

Responses never include secrets: no password hashes or token hashes, and a device's SNMP
community and v3 keys are reported only as ``snmp_credentials_set``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ApiTokenCreate",
    "ApiTokenCreated",
    "ApiTokenOut",
    "CustomerCreate",
    "CustomerOut",
    "CustomerUpdate",
    "DeviceCreate",
    "DeviceOut",
    "DeviceUpdate",
    "Endpoint",
    "EnrolmentTokenCreate",
    "EnrolmentTokenOut",
    "InstallationCreate",
    "InstallationOut",
    "InstallationUpdate",
    "JobLogEntryOut",
    "JobLogOut",
    "JobOut",
    "LoginRequest",
    "MeOut",
    "RemoteTechnicianSetting",
    "RoleAssignmentCreate",
    "RoleAssignmentOut",
    "UserCreate",
    "UserOut",
    "UserUpdate",
]

Role = Literal["administrator", "configurer", "user", "viewer", "approver"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class LoginRequest(_In):
    email: str
    password: str


class CustomerCreate(_In):
    name: str
    parent_id: int | None = Field(None, description="nest under this customer; omit for top level")


class CustomerUpdate(_In):
    name: str | None = None
    parent_id: int | None = None


class CustomerOut(_Out):
    id: int
    name: str
    parent_id: int | None
    created_at: datetime


_SITE_SUBNETS = ("the site's device subnets in CIDR form (e.g. `10.20.0.0/24`); when set, the "
                 "agent reaches nothing outside them nor outside its own `--site-subnets` "
                 "(the tighter list wins); no host bits, no loopback, link-local, multicast, "
                 "carrier-grade NAT or reserved ranges; empty or null: no limit")


class InstallationCreate(_In):
    customer_id: int
    name: str
    enabled: bool = True
    site_subnets: list[str] | None = Field(None, description=_SITE_SUBNETS)


class InstallationUpdate(_In):
    customer_id: int | None = None
    name: str | None = None
    enabled: bool | None = None
    site_subnets: list[str] | None = Field(None, description=_SITE_SUBNETS)


class InstallationOut(_Out):
    id: int
    customer_id: int
    name: str
    enabled: bool
    online: bool
    last_seen_at: datetime | None
    cert_not_after: datetime | None
    agent_version: str | None
    created_at: datetime
    site_subnets: list[str] | None = None


class EnrolmentTokenCreate(_In):
    lifetime_hours: int = Field(24, description="1 to 720")
    purpose: Literal["enrol", "replace"] | None = Field(
        None, description="`replace` is required for an installation that is already enrolled "
        "(its certificate is replaced when the token is used); default `enrol`")


class EnrolmentTokenOut(BaseModel):
    token: str = Field(description="shown once; give it to `ewsgate agent enroll --token`")
    installation_id: int
    expires_at: datetime
    purpose: str = "enrol"


class EnrolmentRecordOut(BaseModel):
    """One enrolment token of an installation: its history entry (never the token itself)."""

    id: int
    purpose: str
    created_at: datetime
    created_by_email: str | None
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None
    issued_cert_serial: str | None
    replaced_cert_serial: str | None


class Endpoint(_In):
    scheme: Literal["http", "https"]
    port: int


class _DeviceFields(_In):
    name: str | None = None
    make: str | None = Field(None, description="hp, ricoh, kyocera, canon, brother, lexmark, "
                                               "xerox, konica, sharp, epson or other")
    model: str | None = None
    ip: str | None = Field(None, description="IPv4 or IPv6 address on the site's LAN")
    hostname: str | None = None
    mac: str | None = Field(None, description="any notation; stored as aa:bb:cc:dd:ee:ff")
    serial: str | None = None
    ews_endpoints: list[Endpoint] | None = Field(
        None, description="the first is the landing page")
    identity_method: Literal["mac", "serial"] | None = None
    snmp_version: Literal["2c", "3", "off"] | None = None
    snmp_port: int | None = None
    snmp_community: str | None = None
    snmp_v3_user: str | None = None
    snmp_v3_auth_protocol: str | None = None
    snmp_v3_auth_key: str | None = None
    snmp_v3_priv_protocol: str | None = None
    snmp_v3_priv_key: str | None = None


class DeviceCreate(_DeviceFields):
    installation_id: int
    name: str
    ip: str


class DeviceUpdate(_DeviceFields):
    installation_id: int | None = None


class DeviceOut(_Out):
    id: int
    installation_id: int
    name: str
    make: str
    model: str
    ip: str
    hostname: str | None
    mac: str | None
    serial: str | None
    ews_endpoints: list[dict[str, Any]]
    identity_method: str
    snmp_version: str
    snmp_port: int
    snmp_v3_user: str | None
    snmp_v3_auth_protocol: str | None
    snmp_v3_priv_protocol: str | None
    snmp_credentials_set: bool
    remote_technician_enabled: bool
    last_identity_result: str | None
    last_identity_detail: str | None
    last_verified_at: datetime | None
    created_at: datetime
    updated_at: datetime
    #: identity pins held (``ews_cert_sha256``, ``mac``, ``learned_at``; null until learned)
    identity_pins: dict[str, Any] = {}
    #: ``{level: strong|pinned|pending|weak, weak, factors, message}``
    identity_strength: dict[str, Any] = {}

    @classmethod
    def of(cls, device: Any) -> DeviceOut:
        """From a :class:`~ewsgate.portal.store.models.Device` (read by attribute, in Rust)."""
        from ewsgate.portal.services.device_pins import identity_strength, pins_view

        out = cls.model_validate(device)
        out.identity_pins = pins_view(device)
        out.identity_strength = identity_strength(device)
        return out


class RemoteTechnicianSetting(_In):
    enabled: bool


class UserCreate(_In):
    email: str
    password: str
    name: str | None = None
    active: bool = True


class UserUpdate(_In):
    email: str | None = None
    name: str | None = None
    password: str | None = None
    current_password: str | None = None
    active: bool | None = None


class UserOut(_Out):
    id: int
    email: str
    name: str
    active: bool
    created_at: datetime


class RoleAssignmentCreate(_In):
    user_id: int
    role: Role
    customer_id: int | None = Field(None, description="omit for the whole dealer")


class RoleAssignmentOut(_Out):
    id: int
    user_id: int
    role: str
    customer_id: int | None
    created_at: datetime


class MeOut(BaseModel):
    user: UserOut
    roles: list[RoleAssignmentOut]
    csrf_token: str | None = Field(
        None, description="with the session cookie: send as X-CSRF-Token on changes")
    session_expires_at: datetime | None = None


class ApiTokenCreate(_In):
    name: str


class ApiTokenOut(_Out):
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None


class ApiTokenCreated(ApiTokenOut):
    token: str = Field(description="shown once; send as 'Authorization: Bearer <token>'")


class JobOut(_Out):
    id: int
    type: str
    status: str
    device_id: int | None
    device_name: str | None
    customer_id: int | None
    user_id: int | None
    user_email: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: str | None


class JobLogEntryOut(_Out):
    seq: int
    at: datetime
    user_email: str | None
    method: str
    url: str
    status: int | None
    bytes_in: int
    bytes_out: int
    duration_ms: int
    outcome: str
    detail: str | None
    #: the browser's address as the relay saw it
    client: str | None = None


class JobLogOut(BaseModel):
    job_id: int
    status: str
    live: bool = Field(description="the job is still running: more entries may come")
    #: why the session was asked for (reason, ticket, read-only) and who approved it
    purpose: dict[str, Any] | None = None
    approval: dict[str, Any] | None = None
    entries: list[JobLogEntryOut]


class TunnelReportOut(_Out):
    """What the agent reported about the relay in this job's session (docs/control-channel.md)."""

    at: datetime
    session_id: str
    kind: str
    code: str
    budget: str | None
    count: int
    detail: str | None
