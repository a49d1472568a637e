"""The portal's ES256 signing keys: generated once, stored in the data directory, rotation-ready.

Theory of operation: the ring is created on first use (the first token, ticket or JWKS
request), so merely building the portal application writes nothing. Every key is a P-256
private JWK in its own file
``<data-dir>/signing-keys/<kid>.json`` (mode 0600, directory 0700), with its creation time and,
once retired, its retirement time. The key id is the RFC 7638 thumbprint, so it is stable and
derived from the key itself. The *active* key — the newest one not retired — signs access tokens
and tunnel tickets; every key not retired is published at ``/.well-known/jwks.json``, so relays
keep accepting tokens signed by the previous key after a rotation.

Rotation: :meth:`SigningKeys.rotate` writes a new key, which becomes active at once; the old key
stays published. After the longest token lifetime (30 minutes, the session cap) has passed,
:meth:`SigningKeys.retire` takes the old key out of the published set. Another portal process
sharing the data directory picks changes up on its next read (the directory's modification time
is checked on every access), so a rotation needs no restart. Replicas on several hosts share
their keys through the database (:mod:`.key_sync`), each keeping its directory in step.

The private keys never leave this module except as signatures.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

__all__ = ["ALGORITHM", "SigningKey", "SigningKeys"]

ALGORITHM = "ES256"
_SUBDIR = "signing-keys"


@dataclass(frozen=True)
class SigningKey:
    """One stored key: its id, the private JWK, and when it was created / retired."""

    kid: str
    key: ECKey
    created_at: datetime
    retired_at: datetime | None = None

    def public_jwk(self) -> dict[str, Any]:
        """The public half, as published in the JWKS (``use=sig``, ``alg=ES256``, ``kid``)."""
        data = self.key.as_dict(private=False)
        data.update({"kid": self.kid, "use": "sig", "alg": ALGORITHM})
        return dict(data)


class SigningKeys:
    """The key ring in one directory. Create with :meth:`open`; it makes a key if there is none."""

    def __init__(self, directory: Path, clock: Callable[[], datetime]) -> None:
        self.directory = directory
        self._clock = clock
        self._keys: list[SigningKey] = []
        self._seen_mtime: int | None = None

    @classmethod
    def open(cls, data_dir: Path, clock: Callable[[], datetime] | None = None) -> SigningKeys:
        """The key ring under ``data_dir/signing-keys``. Nothing is read or written until a key
        is needed; the first use generates the first key (and the directory)."""
        return cls(Path(data_dir) / _SUBDIR, clock or (lambda: datetime.now(UTC)))

    # -- reading ---------------------------------------------------------------------------

    def _ensure(self) -> None:
        """Load the ring, creating the directory and a first key when there is none."""
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._reload()
        if self._active_or_none() is None:
            self.rotate()

    def _reload(self) -> None:
        mtime = self.directory.stat().st_mtime_ns
        if mtime == self._seen_mtime:
            return
        keys: list[SigningKey] = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                key = ECKey.import_key(data["jwk"])
                retired = data.get("retired_at")
                keys.append(
                    SigningKey(
                        kid=data["kid"],
                        key=key,
                        created_at=datetime.fromisoformat(data["created_at"]),
                        retired_at=datetime.fromisoformat(retired) if retired else None,
                    )
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise RuntimeError(
                    f"signing key file {path} is unreadable or malformed ({exc}); restore it "
                    "from a backup or move it away to let the portal generate a new key"
                ) from exc
        keys.sort(key=lambda k: (k.created_at, k.kid))
        self._keys = keys
        self._seen_mtime = mtime

    def _active_or_none(self) -> SigningKey | None:
        live = [k for k in self._keys if k.retired_at is None]
        return live[-1] if live else None

    @property
    def active(self) -> SigningKey:
        """The key that signs new tokens: the newest one not retired."""
        self._ensure()
        key = self._active_or_none()
        if key is None:
            raise RuntimeError(
                f"no signing key left in {self.directory}: every key is retired; run a rotation"
            )
        return key

    def published(self) -> list[SigningKey]:
        """Every key not retired, newest last."""
        self._ensure()
        return [k for k in self._keys if k.retired_at is None]

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public JWK Set (RFC 7517) served at ``/.well-known/jwks.json``."""
        return {"keys": [k.public_jwk() for k in self.published()]}

    def public_key_set(self) -> KeySet:
        """The published keys as a joserfc :class:`KeySet`, for verifying our own tokens."""
        return KeySet.import_key_set(self.jwks())  # type: ignore[arg-type]

    def entries(self) -> list[SigningKey]:
        """Every key in the directory, retired ones included, oldest first (no key is made)."""
        if not self.directory.is_dir():
            return []
        self._reload()
        return list(self._keys)

    def store(self, entry: SigningKey) -> None:
        """Write ``entry`` as it is (a key another replica made, or its retirement)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._write(entry, exclusive=False)
        self._seen_mtime = None
        self._reload()

    # -- signing ---------------------------------------------------------------------------

    def sign(self, claims: dict[str, Any], *, typ: str) -> str:
        """A compact JWS over ``claims`` with the active key (header: alg, kid, typ)."""
        key = self.active
        header = {"alg": ALGORITHM, "kid": key.kid, "typ": typ}
        return jwt.encode(header, claims, key.key, algorithms=[ALGORITHM])

    # -- rotation --------------------------------------------------------------------------

    def rotate(self) -> SigningKey:
        """Generate a new key and make it active; older keys stay published until retired."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ECKey.generate_key("P-256", private=True)
        kid = key.thumbprint()
        entry = SigningKey(kid=kid, key=key, created_at=self._clock())
        self._write(entry, exclusive=True)
        self._seen_mtime = None
        self._reload()
        return entry

    def retire(self, kid: str) -> None:
        """Stop publishing ``kid``; tokens it signed stop verifying. The active key cannot go."""
        self._ensure()
        match = [k for k in self._keys if k.kid == kid and k.retired_at is None]
        if not match:
            raise KeyError(f"no published signing key with kid {kid!r}")
        if match[0] is self._active_or_none():
            raise ValueError("the active signing key cannot be retired; rotate first")
        retired = SigningKey(kid, match[0].key, match[0].created_at, self._clock())
        self._write(retired, exclusive=False)
        self._seen_mtime = None
        self._reload()

    def _write(self, entry: SigningKey, *, exclusive: bool) -> None:
        data = {
            "kid": entry.kid,
            "created_at": entry.created_at.isoformat(),
            "retired_at": entry.retired_at.isoformat() if entry.retired_at else None,
            "jwk": dict(entry.key.as_dict(private=True)),
        }
        path = self.directory / f"{entry.kid}.json"
        tmp = self.directory / f".{entry.kid}.json.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        fd = os.open(tmp, flags, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        if exclusive and path.exists():
            tmp.unlink()
            raise FileExistsError(f"signing key {path} already exists")
        os.replace(tmp, path)
        # A new file bumps the directory mtime; a replaced one may not on every filesystem.
        os.utime(self.directory)
