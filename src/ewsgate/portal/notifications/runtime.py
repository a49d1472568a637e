"""Wiring of notifications into the portal process: the REST routes, the administrators'
page and the :class:`~.worker.NotificationWorker` among the background services.

The SMTP server comes from ``--smtp-url`` / ``--smtp-from`` (:mod:`.settings`); without it the
worker sends webhooks only and e-mails wait, ``pending``, for a server to be configured.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from fastapi import FastAPI

from ewsgate.portal.context import PortalContext
from ewsgate.portal.notifications.senders import EmailSender, Sender, WebhookSender
from ewsgate.portal.notifications.settings import SmtpSettings, parse_smtp_url
from ewsgate.portal.notifications.webhook_transport import parse_networks
from ewsgate.portal.notifications.worker import NotificationWorker

__all__ = ["build_worker", "mount_notifications", "smtp_settings", "worker_of"]

log = logging.getLogger(__name__)


def smtp_settings(values: Any) -> SmtpSettings | None:
    """The validated SMTP settings of the portal's flags, or None (no ``--smtp-url``)."""
    url = values.get("smtp_url")
    return parse_smtp_url(url, values.get("smtp_from")) if url else None


def build_worker(ctx: PortalContext, *, tls_context: ssl.SSLContext | None = None,
                 **options: Any) -> NotificationWorker:
    """A worker over the portal's database with the configured senders."""
    allowed = parse_networks(ctx.config.values.get("webhook_allow_network"))
    senders: dict[str, Sender] = {"webhook": WebhookSender(tls_context=tls_context,
                                                           allowed_networks=allowed)}
    smtp = smtp_settings(ctx.config.values)
    if smtp is not None:
        senders["email"] = EmailSender(smtp, tls_context=tls_context)
    else:
        log.info("no --smtp-url: notification e-mails stay queued until one is configured")
    return NotificationWorker(ctx.database, senders, clock=ctx.clock, **options)


def mount_notifications(app: FastAPI, ctx: PortalContext, *, pages: bool) -> None:
    """Add the routes (and the page) and the worker to ``app``."""
    from ewsgate.portal.notifications.api import router

    app.include_router(router)
    if pages:
        from ewsgate.portal.notifications.pages import mount_pages

        mount_pages(app)
    worker = build_worker(ctx)
    app.state.ewsgate_notifications = worker
    ctx.background.append(worker)


def worker_of(app: FastAPI) -> NotificationWorker:
    """The worker :func:`mount_notifications` added."""
    worker: NotificationWorker = app.state.ewsgate_notifications
    return worker
