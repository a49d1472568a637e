"""Secrets at rest: argon2id for passwords, SHA-256 for random tokens.

Passwords are guessable, so they get a slow, salted hash (argon2id, argon2-cffi's RFC 9106
defaults). Tokens, cookie values and relay secrets are 256 random bits, so a fast SHA-256 is
enough to make a leaked table useless, and lets the portal find a token by its hash.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["dummy_password_hash", "hash_password", "hash_secret", "needs_rehash", "new_secret",
           "set_password_cost", "verify_password"]

_HASHER = PasswordHasher()
_DUMMY: list[str] = []


def set_password_cost(*, time_cost: int, memory_cost_kib: int, parallelism: int = 1) -> None:
    """Change the argon2 cost for new hashes (the test suite lowers it to stay fast; existing
    hashes keep verifying and are upgraded at the next login)."""
    global _HASHER
    _HASHER = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost_kib,
                             parallelism=parallelism)
    _DUMMY.clear()


def dummy_password_hash() -> str:
    """A hash to verify against when a login names an unknown user, so timing does not tell."""
    if not _DUMMY:
        _DUMMY.append(_HASHER.hash("not a real password, used to equalise timing"))
    return _DUMMY[0]


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (False for a malformed hash)."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's."""
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def new_secret(prefix: str = "") -> str:
    """A new random secret: ``prefix`` + 256 bits, URL-safe."""
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a random secret (tokens, cookie values, relay secrets)."""
    return hashlib.sha256(secret.encode()).hexdigest()
