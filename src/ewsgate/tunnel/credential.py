"""The HELLO credential: the tunnel ticket plus the connection generation, as compact JSON.

::

    {"ticket": "<JWT signed by the portal>", "gen": 1}

``gen`` counts the agent's connections for one session (1, 2, 3 ... on reconnects); the relay
admits each generation of a ticket once (see ``docs/tunnel-protocol.md``, Reconnects and
replay). Kept here, free of JWT and certificate imports, so the agent stays light.
"""

from __future__ import annotations

import json

from ewsgate.tunnel.errors import ErrorCode, RemoteProtocolError

__all__ = ["decode_credential", "encode_credential"]


def encode_credential(ticket: str, generation: int) -> bytes:
    """The credential an agent puts in its HELLO."""
    if generation < 1:
        raise ValueError("the connection generation starts at 1")
    return json.dumps({"ticket": ticket, "gen": generation}, separators=(",", ":")).encode()


def decode_credential(credential: bytes) -> tuple[str, int]:
    """``(ticket, generation)``; raises :class:`RemoteProtocolError` when malformed."""
    try:
        data = json.loads(credential.decode("utf-8"))
        ticket, gen = data["ticket"], data["gen"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise RemoteProtocolError("the HELLO credential is not {\"ticket\", \"gen\"} JSON; "
                                  "agent and relay versions may differ",
                                  ErrorCode.TICKET_REFUSED) from None
    if not isinstance(ticket, str) or not isinstance(gen, int) or isinstance(gen, bool) or \
            gen < 1:
        raise RemoteProtocolError("the HELLO credential has a bad ticket or generation",
                                  ErrorCode.TICKET_REFUSED)
    return ticket, gen
