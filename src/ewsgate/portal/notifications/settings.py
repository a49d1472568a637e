"""The notification settings of a portal: the SMTP server and the sender address.

``--smtp-url`` (``EWSGATE_SMTP_URL``, config key ``smtp_url``) names the server:

* ``smtps://user:pass@host:465`` — TLS from the first byte (implicit TLS);
* ``smtp://user:pass@host:587`` — STARTTLS, required: a server that does not offer it is not
  sent the password nor the message (a downgrade attack cannot strip it);
* ``smtp://host:25?starttls=off`` — plain text, for a relay on the same host; refused with a
  user and password, which would travel in clear.

User and password are percent-decoded. ``--smtp-from`` is the ``From:`` address. Without
``--smtp-url`` e-mail notifications are queued and stay ``pending`` (visible, not lost) until a
server is configured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from ewsgate.config import ConfigError

__all__ = ["SmtpSettings", "parse_smtp_url"]

_FROM = re.compile(r"[^@\s<>]{1,64}@[A-Za-z0-9.-]{1,253}")


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where and how to send e-mail."""

    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    #: TLS from the first byte (``smtps://``)
    implicit_tls: bool = False
    #: STARTTLS required (``smtp://``), or off (``?starttls=off``)
    starttls: bool = True
    timeout: float = 30.0

    def __repr__(self) -> str:  # never show the password in a log line
        return (f"SmtpSettings(host={self.host!r}, port={self.port}, sender={self.sender!r}, "
                f"user={self.username!r}, implicit_tls={self.implicit_tls}, "
                f"starttls={self.starttls})")


def parse_smtp_url(url: str, sender: str | None) -> SmtpSettings:
    """Validate ``--smtp-url`` and ``--smtp-from``; :class:`ConfigError` says what is wrong."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--smtp-url: not a URL ({exc})") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError("--smtp-url must look like smtps://user:pass@host:465 or "
                          "smtp://user:pass@host:587 (STARTTLS)")
    query = parse_qs(parts.query)
    unknown = sorted(set(query) - {"starttls"})
    if unknown:
        raise ConfigError(f"--smtp-url: unknown option(s) {', '.join(unknown)}; the only one "
                          "is starttls=off")
    starttls_values = query.get("starttls", ["on"])
    if starttls_values[-1] not in ("on", "off"):
        raise ConfigError("--smtp-url: starttls must be on or off")
    implicit = parts.scheme == "smtps"
    starttls = not implicit and starttls_values[-1] == "on"
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if username and not implicit and not starttls:
        raise ConfigError("--smtp-url: a user and password with starttls=off would cross the "
                          "network in clear; use smtps:// or STARTTLS")
    if not sender:
        raise ConfigError("--smtp-from is needed with --smtp-url: the From: address of "
                          "notification e-mails (e.g. ewsgate@example.com)")
    if not _FROM.fullmatch(sender.strip()):
        raise ConfigError(f"--smtp-from {sender!r} is not an e-mail address")
    return SmtpSettings(host=parts.hostname, port=port or (465 if implicit else 587),
                        sender=sender.strip(), username=username, password=password,
                        implicit_tls=implicit, starttls=starttls)
