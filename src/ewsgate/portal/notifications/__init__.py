"""Notifications: who is told of a Remote Technician session, and how the telling survives.

::

    service layer (one transaction)                     NotificationWorker (each replica)
      session change ─┐                                   claim due rows (FOR UPDATE SKIP
      outbox.notify() ┴─► notifications rows  ──────────►  LOCKED on PostgreSQL), lease them,
                          (pending, one per recipient      deliver: EmailSender (SMTP) or
                           and channel)                    WebhookSender (signed POST), then
                                                           delivered / retry with backoff and
                                                           jitter / failed after max attempts

A notifier that fails never blocks or loses a session event: the event is a row written in the
same transaction as the session change (a transactional outbox), so it exists exactly when the
change does; delivery happens later, is retried, and a delivery that gave up stays visible
(``GET /api/v1/notifications?status=failed``, the administrators' page, a WARNING log line and
the worker's counters). Delivery is at least once: a receiver deduplicates on the notification
id (``X-Ewsgate-Delivery`` / the ``Message-ID``).

* :mod:`.events` — the event kinds and who receives each (contacts, approvers);
* :mod:`.messages` — every text a person reads (English; one place, ready for gettext);
* :mod:`.signing` — the webhook signature (``X-Ewsgate-Signature: t=<unix>,v1=<hex>``);
* :mod:`.outbox` — enqueue, claim, record outcomes, backoff;
* :mod:`.contacts` — a customer's e-mail addresses and webhook (validated; secret sealed);
* :mod:`.senders` — SMTP (aiosmtplib, STARTTLS or implicit TLS) and webhook (httpx) delivery;
* :mod:`.worker` — the background service that drains the outbox;
* :mod:`.api` — the REST routes; :mod:`.pages` — the administrators' page.
"""
