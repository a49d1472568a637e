"""Delivery over one channel: SMTP e-mail and signed webhooks. Senders never raise.

Each ``send`` returns a :class:`Outcome`: delivered, or the reason it was not and whether a
retry can help (``permanent``: the server refused the recipient, the receiver answered 4xx).
Foreign exceptions (aiosmtplib, httpx, OSError) are translated here, at the boundary.

E-mail goes through aiosmtplib (asyncio-native: no thread per message, timeouts and
cancellation behave like the rest of the portal). The webhook is one ``POST`` with httpx,
redirects not followed (a redirect could move a signed body to another host), TLS verified,
and only to public addresses or networks an operator allowed (:mod:`.webhook_transport`).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Protocol

import aiosmtplib
import httpx

from ewsgate import __version__
from ewsgate.portal.notifications.messages import email_text, webhook_body
from ewsgate.portal.notifications.settings import SmtpSettings
from ewsgate.portal.notifications.signing import SIGNATURE_HEADER, signature_header
from ewsgate.portal.notifications.webhook_transport import GuardedTransport, Network

__all__ = ["DELIVERY_HEADER", "EmailSender", "Outcome", "Sender", "WebhookSender"]

DELIVERY_HEADER = "X-Ewsgate-Delivery"
_RETRYABLE_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one delivery attempt came to."""

    delivered: bool
    error: str = ""
    permanent: bool = False


class Sender(Protocol):
    async def send(self, notification_id: int, kind: str, target: str,
                   data: Mapping[str, Any], *, secret: str | None = None) -> Outcome: ...


class EmailSender:
    """Sends one e-mail per notification through the configured SMTP server."""

    def __init__(self, settings: SmtpSettings, *, tls_context: ssl.SSLContext | None = None
                 ) -> None:
        self.settings = settings
        self.tls_context = tls_context or ssl.create_default_context()

    def message(self, notification_id: int, kind: str, target: str,
                data: Mapping[str, Any]) -> EmailMessage:
        text = email_text(kind, data)
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = target
        message["Subject"] = text.subject
        message["Date"] = format_datetime(datetime.now(UTC))
        domain = self.settings.sender.rpartition("@")[2] or "ewsgate"
        # the same on every retry, so a mail client shows a re-sent notification once
        message["Message-ID"] = f"<ewsgate-notification-{notification_id}@{domain}>"
        message[DELIVERY_HEADER] = str(notification_id)
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(text.body)
        return message

    async def send(self, notification_id: int, kind: str, target: str,
                   data: Mapping[str, Any], *, secret: str | None = None) -> Outcome:
        s = self.settings
        where = f"SMTP server {s.host}:{s.port}"
        try:
            await aiosmtplib.send(
                self.message(notification_id, kind, target, data), hostname=s.host,
                port=s.port, username=s.username, password=s.password,
                use_tls=s.implicit_tls, start_tls=s.starttls,
                tls_context=self.tls_context, timeout=s.timeout)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            details = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            return Outcome(False, f"{where} refused {target}: {details}; check the address "
                           "in the customer's contacts", permanent=True)
        except aiosmtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.code < 600
            return Outcome(False, f"{where} answered {exc.code} {exc.message}",
                           permanent=permanent)
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError,
                aiosmtplib.SMTPServerDisconnected) as exc:
            return Outcome(False, f"{where} unreachable: {exc}")
        except aiosmtplib.SMTPException as exc:
            return Outcome(False, f"{where}: {exc}; check --smtp-url and that the server "
                           "offers STARTTLS or TLS")
        except (OSError, ssl.SSLError) as exc:
            return Outcome(False, f"{where} unreachable: {exc}")
        return Outcome(True)


class WebhookSender:
    """POSTs the event as JSON, signed with the customer's webhook secret."""

    def __init__(self, *, tls_context: ssl.SSLContext | None = None, timeout: float = 10.0,
                 wall_clock: Callable[[], float] = time.time,
                 allowed_networks: Sequence[Network] = ()) -> None:
        self._tls_context = tls_context
        self._allowed = tuple(allowed_networks)
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None  # made at the first send, in the loop
        self._wall = wall_clock

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            transport = GuardedTransport(self._tls_context or ssl.create_default_context(),
                                         self._allowed)
            self._client = httpx.AsyncClient(transport=transport, timeout=self._timeout,
                                             follow_redirects=False, trust_env=False)
        return self._client

    async def send(self, notification_id: int, kind: str, target: str,
                   data: Mapping[str, Any], *, secret: str | None = None) -> Outcome:
        if not secret:
            return Outcome(False, "the webhook has no secret any more (removed from the "
                           "customer's contacts); nothing was sent", permanent=True)
        body = webhook_body(notification_id, kind, data)
        headers = {"Content-Type": "application/json",
                   "User-Agent": f"ewsgate/{__version__}",
                   SIGNATURE_HEADER: signature_header(secret, int(self._wall()), body),
                   DELIVERY_HEADER: str(notification_id)}
        try:
            response = await self._http().post(target, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Outcome(False, f"webhook {target} unreachable: {type(exc).__name__}: {exc}")
        if 200 <= response.status_code < 300:
            return Outcome(True)
        permanent = (400 <= response.status_code < 500
                     and response.status_code not in _RETRYABLE_STATUS) or (
                         300 <= response.status_code < 400)
        hint = ("; redirects are not followed, set the final URL" if 300 <= response.status_code
                < 400 else "")
        return Outcome(False, f"webhook {target} answered {response.status_code}"
                       f" {response.reason_phrase}{hint}", permanent=permanent)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
