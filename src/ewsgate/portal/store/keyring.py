"""The portal's key-encryption keys (KEKs): SNMP secrets are sealed with AES-256-GCM at rest.

A device's SNMP community and SNMPv3 keys must reach the agent as given, so they cannot be
hashed like passwords; they are encrypted instead. The keys live in the portal's data
directory, never in the database, so a copy of the database (a backup, a stolen file, a SQL
injection that reads rows) holds only ciphertext::

    DATA_DIR/keys/            mode 0700
        kek-0001.key          mode 0600, 32 random bytes, base64url; one line
        kek-0002.key          the newest number is the current key (seals new values)
        ...

A sealed value is ``ewsk1:<kid>:<base64url(nonce ‖ ciphertext ‖ tag)>`` with a 96-bit random
nonce per value; the associated data is the column's name (``devices.snmp_v3_auth_key``), so a
ciphertext moved to another column does not open. Older keys stay in the directory so that
values sealed with them still open; :func:`rotate` adds a new current key, and
``ewsgate admin rotate-kek`` re-seals every stored value with it (after which the older key
files may be removed).

A value without the ``ewsk1:`` prefix is one stored before sealing existed: it is read as it is
and sealed the next time the portal starts (:func:`ewsgate.portal.store.sealed.reseal_all`).
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ewsgate.fsmode import private_dir, write_private_file

__all__ = ["PREFIX", "Keyring", "KeyringError", "load_or_create_keyring", "rotate"]

PREFIX = "ewsk1:"
_KEY_FILE = re.compile(r"^kek-(\d{4,9})\.key$")
_NONCE = 12


class KeyringError(ValueError):
    """A sealed value cannot be opened or a key file cannot be used; the message says why."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Keyring:
    """Key-encryption keys by id; ``current`` seals, any of them opens."""

    keys: dict[str, bytes] = field(repr=False)
    current: str
    #: where the keys came from (for messages); ``None`` for an in-memory keyring
    directory: Path | None = None

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise KeyringError(f"current key {self.current!r} is not in the keyring")
        for kid, key in self.keys.items():
            if len(key) != 32:
                raise KeyringError(f"key {kid} is {len(key)} bytes; AES-256 needs 32")

    @classmethod
    def ephemeral(cls) -> Keyring:
        """A keyring that lives only in this process (tests, in-memory databases)."""
        return cls({"0001": secrets.token_bytes(32)}, "0001")

    def seal(self, plaintext: str, *, context: str) -> str:
        """Encrypt ``plaintext`` for the column named ``context``."""
        nonce = secrets.token_bytes(_NONCE)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, plaintext.encode(),
                                                         context.encode())
        return f"{PREFIX}{self.current}:{_b64(nonce + sealed)}"

    def open(self, stored: str, *, context: str) -> str:
        """Decrypt a value sealed by :meth:`seal`; a value without the prefix is returned as is
        (stored before sealing existed)."""
        if not stored.startswith(PREFIX):
            return stored
        try:
            kid, body = stored[len(PREFIX):].split(":", 1)
            blob = _unb64(body)
        except ValueError:
            raise KeyringError(f"a sealed {context} value is malformed; set it again") from None
        key = self.keys.get(kid)
        if key is None:
            where = f" in {self.directory}" if self.directory else ""
            raise KeyringError(
                f"a {context} value is sealed with key {kid}, which is not{where}; restore "
                f"kek-{kid}.key from a backup of the portal's data directory, or set the "
                "value again")
        try:
            return AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], context.encode()).decode()
        except (InvalidTag, ValueError, UnicodeDecodeError):
            raise KeyringError(f"a sealed {context} value does not open with key {kid} (the "
                               "value or the key file was altered); set the value again"
                               ) from None

    def is_current(self, stored: str) -> bool:
        """Whether ``stored`` is sealed with the current key (nothing to re-seal)."""
        return stored.startswith(f"{PREFIX}{self.current}:")


def _read_keys(directory: Path) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for path in sorted(directory.iterdir()):
        match = _KEY_FILE.match(path.name)
        if match is None:
            continue
        try:
            key = _unb64(path.read_text().strip())
        except ValueError:
            raise KeyringError(f"{path} is not a base64url key; restore it from a backup"
                               ) from None
        if len(key) != 32:
            raise KeyringError(f"{path} holds {len(key)} bytes, not 32; restore it from a "
                               "backup")
        keys[match.group(1)] = key
    return keys


def _new_key_file(directory: Path, keys: dict[str, bytes]) -> str:
    number = max((int(kid) for kid in keys), default=0) + 1
    kid = f"{number:04d}"
    key = secrets.token_bytes(32)
    write_private_file(directory / f"kek-{kid}.key", _b64(key) + "\n", exclusive=True)
    keys[kid] = key
    return kid


def load_or_create_keyring(data_dir: Path) -> Keyring:
    """The keyring of ``DATA_DIR/keys``; the first key is created when there is none."""
    directory = private_dir(data_dir / "keys")
    keys = _read_keys(directory)
    if not keys:
        try:
            _new_key_file(directory, keys)
        except FileExistsError:  # another process created it at the same moment
            keys = _read_keys(directory)
    current = max(keys, key=int)
    return Keyring(keys, current, directory)


def rotate(data_dir: Path) -> Keyring:
    """Add a new current key to ``DATA_DIR/keys`` and return the keyring with it."""
    directory = private_dir(data_dir / "keys")
    keys = _read_keys(directory)
    kid = _new_key_file(directory, keys)
    return Keyring(keys, kid, directory)
