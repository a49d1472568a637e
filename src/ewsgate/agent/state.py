"""The installation's data directory: its key, certificate, the portal's CA and where to dial.

Layout (``--data-dir``, default ``./data/agent``)::

    key.pem            the installation's private key (mode 0600; never leaves this machine)
    cert.pem           its client certificate, signed by the portal's CA
    ca.pem             the portal's CA certificate (the only root the agent trusts)
    installation.json  {"installation_id", "control_address", "server_name", "enrolled_at"}

Every file is written to a temporary name and renamed into place. A renewal replaces the key
and the certificate together: both are first written as ``key.pem.new`` / ``cert.pem.new``,
then renamed one after the other; :meth:`AgentState.load` finishes an interrupted renewal (a key
and certificate that do not match, with a matching ``.new`` pair beside them) instead of failing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from ewsgate import pki
from ewsgate.config import HostPort, parse_host_port

__all__ = ["AgentIdentity", "AgentState", "StateError"]


class StateError(Exception):
    """The data directory cannot be used; ``code`` is stable, the message says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """Everything the agent needs to open its control stream."""

    installation_id: str
    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes
    control_address: HostPort
    server_name: str
    #: every portal replica to dial, in order (empty: just ``control_address``)
    control_addresses: tuple[HostPort, ...] = ()

    @property
    def portal_addresses(self) -> tuple[HostPort, ...]:
        """The addresses to dial: ``control_addresses``, else ``control_address``."""
        return self.control_addresses or (self.control_address,)

    @property
    def cert(self) -> x509.Certificate:
        return pki.cert_from_pem(self.cert_pem)

    @property
    def not_before(self) -> dt.datetime:
        return self.cert.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    def renew_at(self, fraction: float = 2 / 3) -> dt.datetime:
        """When ``fraction`` of the certificate's life has passed (renewal time)."""
        return self.not_before + (self.not_after - self.not_before) * fraction

    @property
    def serial(self) -> str:
        return pki.serial_hex(self.cert)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class AgentState:
    """Reads and writes the data directory (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.key_path = data_dir / "key.pem"
        self.cert_path = data_dir / "cert.pem"
        self.ca_path = data_dir / "ca.pem"
        self.info_path = data_dir / "installation.json"

    def is_enrolled(self) -> bool:
        return self.info_path.exists() and self.cert_path.exists() and self.key_path.exists()

    def save_enrolment(self, identity: AgentIdentity) -> None:
        """Write a new enrolment (replacing any earlier one)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        _write(self.key_path, identity.key_pem, 0o600)
        _write(self.cert_path, identity.cert_pem)
        _write(self.ca_path, identity.ca_pem)
        info = {"installation_id": identity.installation_id,
                "control_address": str(identity.control_address),
                "server_name": identity.server_name,
                **({"control_addresses": [str(a) for a in identity.control_addresses]}
                   if identity.control_addresses else {}),
                "enrolled_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        _write(self.info_path, json.dumps(info, indent=2).encode() + b"\n", 0o600)

    def save_control_addresses(self, addresses: list[HostPort]) -> None:
        """Record the portal replicas to dial (``ewsgate agent run --portal-addresses``)."""
        info = json.loads(self.info_path.read_text())
        info["control_addresses"] = [str(a) for a in addresses]
        _write(self.info_path, json.dumps(info, indent=2).encode() + b"\n", 0o600)

    def save_renewal(self, key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> None:
        """Replace key and certificate after a renewal (crash-safe, see the module docstring)."""
        _write(self.key_path.with_name("key.pem.new"), key_pem, 0o600)
        _write(self.cert_path.with_name("cert.pem.new"), cert_pem)
        _write(self.ca_path, ca_pem)
        self._finish_renewal()

    def _finish_renewal(self) -> None:
        new_key = self.key_path.with_name("key.pem.new")
        new_cert = self.cert_path.with_name("cert.pem.new")
        if new_key.exists():
            os.replace(new_key, self.key_path)
        if new_cert.exists():
            os.replace(new_cert, self.cert_path)

    def load(self) -> AgentIdentity:
        """The saved identity; :class:`StateError` when not enrolled or inconsistent."""
        if not self.info_path.exists():
            raise StateError("agent.not_enrolled",
                             f"no enrolment in {self.data_dir}; run `ewsgate agent enroll "
                             "--portal HOST:PORT --token TOKEN --data-dir DIR` first")
        try:
            info = json.loads(self.info_path.read_text())
            key_pem = self.key_path.read_bytes()
            cert_pem = self.cert_path.read_bytes()
            ca_pem = self.ca_path.read_bytes()
            address = parse_host_port(str(info["control_address"]))
            listed = info.get("control_addresses") or []
            if not isinstance(listed, list):
                raise ValueError("control_addresses is not a list of HOST:PORT")
            identity = AgentIdentity(installation_id=str(info["installation_id"]),
                                     key_pem=key_pem, cert_pem=cert_pem, ca_pem=ca_pem,
                                     control_address=address,
                                     server_name=str(info["server_name"]),
                                     control_addresses=tuple(parse_host_port(str(a))
                                                             for a in listed))
        except (OSError, ValueError, KeyError) as exc:
            raise StateError("agent.state_unreadable",
                             f"the data directory {self.data_dir} is damaged ({exc}); "
                             "enrol again with a new token") from None
        if pki.key_from_pem(key_pem).public_key() != identity.cert.public_key():
            if self.key_path.with_name("key.pem.new").exists() or \
                    self.cert_path.with_name("cert.pem.new").exists():
                self._finish_renewal()
                return self.load()
            raise StateError("agent.key_mismatch",
                             f"{self.key_path} does not belong to {self.cert_path}; "
                             "enrol again with a new token")
        return identity
