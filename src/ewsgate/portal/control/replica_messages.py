"""Messages between portal replicas: a command forwarded to the replica holding a stream.

One type per message, one parser, one version number. Replica A forwards a command with a
NATS request on :func:`command_subject`; the holder answers with a :class:`CommandReply` and
sends :class:`ProgressNote` messages to the request's ``progress_to`` subject meanwhile::

    A ──CommandRequest──▶ ewsgate.v1.installation.<id>.command ──▶ holder (its ControlHub)
    A ◀──ProgressNote──── <progress_to inbox> ◀─────────────────── holder (agent's progress)
    A ◀──CommandReply──── reply inbox ◀──────────────────────────── holder (agent's result)

Every message is a JSON object with ``"v"``: a replica refuses a message whose major version
it does not know (:class:`MessageError`), so replicas of two versions fail loudly instead of
misreading each other; fields it does not know are ignored (a newer minor version may add
some). The wire format is JSON rather than protobuf on purpose: these messages never leave the
portal's own network and stay readable with ``nats sub 'ewsgate.>'``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MESSAGE_VERSION",
    "SUBJECT_PREFIX",
    "CommandReply",
    "CommandRequest",
    "MessageError",
    "ProgressNote",
    "command_subject",
    "parse_progress",
    "parse_reply",
    "parse_request",
]

#: the major version of the messages below; bumped only for an incompatible change
MESSAGE_VERSION = 1
SUBJECT_PREFIX = f"ewsgate.v{MESSAGE_VERSION}"
#: what a reply's ``error_class`` may name (the hub's error classes, by name)
ERROR_CLASSES = frozenset({"InstallationOffline", "CommandTimedOut", "CommandFailed",
                           "CommandRefused", "CommandError", "InvalidInput"})


class MessageError(ValueError):
    """A message from another replica is malformed or of an unknown version."""


def command_subject(installation_id: int) -> str:
    """The subject the replica holding ``installation_id``'s control stream listens on."""
    return f"{SUBJECT_PREFIX}.installation.{int(installation_id)}.command"


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRequest:
    """Run ``kind`` on the installation's agent (what :meth:`ControlHub.send_command` takes)."""

    installation_id: int
    kind: str
    payload: dict[str, Any]
    timeout: float
    #: the subject for progress notes, or "" when the caller wants none
    progress_to: str = ""
    #: which replica forwarded it (for logs)
    origin: str = ""

    def __post_init__(self) -> None:
        if not self.kind or not self.kind.isidentifier():
            raise MessageError(f"command kind {self.kind!r} is not a name")
        if not 0 < self.timeout <= 3600:
            raise MessageError(f"command timeout {self.timeout!r} is not in (0, 3600] s")

    def encode(self) -> bytes:
        return _encode({"type": "command", "installation_id": self.installation_id,
                        "kind": self.kind, "payload": self.payload, "timeout": self.timeout,
                        "progress_to": self.progress_to, "origin": self.origin})


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandReply:
    """The agent's result (``ok``) or the error the holder's hub raised, by class name."""

    ok: bool
    result: dict[str, Any] = field(default_factory=dict)
    error_class: str = ""
    error_code: str = ""
    error_message: str = ""
    #: which replica answered (for logs)
    holder: str = ""

    def __post_init__(self) -> None:
        if not self.ok and self.error_class not in ERROR_CLASSES:
            raise MessageError(f"error class {self.error_class!r} is not one of "
                               f"{sorted(ERROR_CLASSES)}")

    def encode(self) -> bytes:
        return _encode({"type": "reply", "ok": self.ok, "result": self.result,
                        "error_class": self.error_class, "error_code": self.error_code,
                        "error_message": self.error_message, "holder": self.holder})


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressNote:
    """A progress report of the agent about a forwarded command."""

    command_id: str
    stage: str
    detail: str

    def encode(self) -> bytes:
        return _encode({"type": "progress", "command_id": self.command_id,
                        "stage": self.stage[:64], "detail": self.detail[:2000]})


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps({"v": MESSAGE_VERSION, **body}, separators=(",", ":"),
                      allow_nan=False).encode()


def _decode(data: bytes, expected_type: str) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise MessageError(f"a replica message is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MessageError("a replica message is not a JSON object")
    version = body.get("v")
    if version != MESSAGE_VERSION:
        raise MessageError(f"a replica message has version {version!r}; this replica speaks "
                           f"version {MESSAGE_VERSION} — upgrade the replicas to one release")
    if body.get("type") != expected_type:
        raise MessageError(f"expected a {expected_type!r} message, got {body.get('type')!r}")
    return body


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise MessageError(f"replica message field {name!r} is missing or of the wrong type")
    return value


def parse_request(data: bytes) -> CommandRequest:
    body = _decode(data, "command")
    return CommandRequest(installation_id=_field(body, "installation_id", int),
                          kind=_field(body, "kind", str),
                          payload=_field(body, "payload", dict),
                          timeout=float(_field(body, "timeout", (int, float))),
                          progress_to=str(body.get("progress_to") or ""),
                          origin=str(body.get("origin") or ""))


def parse_reply(data: bytes) -> CommandReply:
    body = _decode(data, "reply")
    return CommandReply(ok=_field(body, "ok", bool), result=dict(body.get("result") or {}),
                        error_class=str(body.get("error_class") or ""),
                        error_code=str(body.get("error_code") or ""),
                        error_message=str(body.get("error_message") or ""),
                        holder=str(body.get("holder") or ""))


def parse_progress(data: bytes) -> ProgressNote:
    body = _decode(data, "progress")
    return ProgressNote(command_id=_field(body, "command_id", str),
                        stage=_field(body, "stage", str), detail=_field(body, "detail", str))
