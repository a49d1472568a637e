"""What of a command is kept in ``control_commands``: everything but its secrets.

A command travels to the agent whole (the agent needs the tunnel ticket and the SNMP
credentials), but its row in the database is a record for people and for replay refusal, and
must not be a second copy of those secrets (a database backup or a read-only SQL hole would
otherwise hand out live tickets and every device's SNMP credentials). Before a payload or a
result is stored, every value under a secret key, at any depth, is replaced:

* ``ticket`` (a signed tunnel ticket, high-entropy) by ``"sha256:<hex>"``, so an operator can
  still match the row with a ticket seen elsewhere (a relay's log) without being able to use it;
* ``community``, ``v3_auth_key``, ``v3_priv_key``, ``password``, ``secret``, ``token`` by
  ``"[redacted]"``: an SNMP community is guessable, so even a digest of it would reveal it.

Empty values stay empty (the record still says that none was set).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

__all__ = ["DIGESTED_KEYS", "REDACTED", "REMOVED_KEYS", "redact"]

DIGESTED_KEYS = frozenset({"ticket"})
REMOVED_KEYS = frozenset({"community", "v3_auth_key", "v3_priv_key", "password", "secret",
                          "token"})
REDACTED = "[redacted]"


def _hidden(key: str, value: Any) -> Any:
    if value in (None, ""):
        return value
    if key in DIGESTED_KEYS and isinstance(value, str):
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return REDACTED


def redact(value: Any) -> Any:
    """A copy of the JSON ``value`` with the secrets taken out (see the module docstring)."""
    if isinstance(value, Mapping):
        return {key: (_hidden(key, item) if key in DIGESTED_KEYS | REMOVED_KEYS
                      else redact(item))
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value
