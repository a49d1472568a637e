"""A customer's notification contacts: e-mail addresses and one signed webhook.

Reading needs any role on the customer; changing needs Administrator over it (the
``manage_access`` action: contacts decide who learns of sessions). The webhook secret is made
by the portal (:func:`~.signing.new_secret`) when a webhook is first set or when rotation is
asked, returned once by :func:`set_contacts`, and stored sealed with the portal's keyring
(:class:`~ewsgate.portal.store.sealed.SealedText`); afterwards only whether one is set shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.notifications.signing import new_secret
from ewsgate.portal.services import audit
from ewsgate.portal.services.access import Action, Actor, load_tree, require
from ewsgate.portal.services.errors import InvalidInput, NotFound
from ewsgate.portal.store.models import Customer, CustomerContacts
from ewsgate.portal.store.types import Clock, utc_now

__all__ = ["MAX_EMAILS", "ContactsView", "clean_emails", "clean_webhook_url", "get_contacts",
           "set_contacts"]

MAX_EMAILS = 20
_EMAIL = re.compile(r"[^@\s<>()\[\],;:\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
_FIELDS = frozenset({"emails", "webhook_url", "rotate_secret"})


@dataclass(frozen=True, slots=True)
class ContactsView:
    """The contacts as the API shows them; ``webhook_secret`` only right after it was made."""

    customer_id: int
    emails: list[str]
    webhook_url: str | None
    webhook_secret_set: bool
    webhook_secret: str | None = None


def clean_emails(value: Any) -> list[str]:
    """A list of distinct, lower-case addresses (at most :data:`MAX_EMAILS`)."""
    if isinstance(value, str):
        value = [v for v in re.split(r"[\s,;]+", value) if v]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput("emails must be a list of e-mail addresses", field="emails")
    out: list[str] = []
    for raw in value:
        address = raw.strip().lower()
        if not _EMAIL.fullmatch(address) or len(address) > 254:
            raise InvalidInput(f"{raw!r} is not an e-mail address (name@example.com)",
                               field="emails")
        if address not in out:
            out.append(address)
    if len(out) > MAX_EMAILS:
        raise InvalidInput(f"at most {MAX_EMAILS} e-mail addresses per customer, not {len(out)}; "
                           "use a mailing list for more", field="emails")
    return out


def clean_webhook_url(value: Any) -> str | None:
    """An ``https://`` URL without credentials or fragment, or None (no webhook)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or len(value) > 2000:
        raise InvalidInput("webhook_url must be an https:// URL of at most 2000 characters",
                           field="webhook_url")
    url = value.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"webhook_url {url!r} is not a URL ({exc})",
                           field="webhook_url") from None
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidInput(f"webhook_url must start with https:// and name a host, not {url!r}; "
                           "the signature proves who sent a delivery, TLS keeps it private",
                           field="webhook_url")
    if parts.username or parts.password or parts.fragment:
        raise InvalidInput("webhook_url must not carry a user, password or #fragment (the "
                           "signature authenticates the portal)", field="webhook_url")
    if port == 0:
        raise InvalidInput("webhook_url's port must be 1..65535", field="webhook_url")
    return url


async def _customer(session: AsyncSession, actor: Actor, customer_id: int,
                    action: Action) -> Customer:
    customer = await session.get(Customer, customer_id)
    if customer is None or customer.dealer_id != actor.dealer_id:
        raise NotFound.of("customer", customer_id)
    tree = await load_tree(session, actor.dealer_id)
    require(actor, action, tree, customer.id, kind="customer", ident=customer_id)
    return customer


def _view(customer_id: int, row: CustomerContacts | None,
          secret: str | None = None) -> ContactsView:
    if row is None:
        return ContactsView(customer_id=customer_id, emails=[], webhook_url=None,
                            webhook_secret_set=False)
    return ContactsView(customer_id=customer_id, emails=list(row.emails),
                        webhook_url=row.webhook_url,
                        webhook_secret_set=bool(row.webhook_secret), webhook_secret=secret)


async def get_contacts(session: AsyncSession, actor: Actor, customer_id: int) -> ContactsView:
    """The customer's contacts (any role on it)."""
    await _customer(session, actor, customer_id, Action.VIEW)
    return _view(customer_id, await session.get(CustomerContacts, customer_id))


async def set_contacts(session: AsyncSession, actor: Actor, customer_id: int,
                       values: Mapping[str, Any], *, clock: Clock = utc_now) -> ContactsView:
    """Change ``emails`` and/or ``webhook_url`` (None removes the webhook and its secret);
    ``rotate_secret: true`` makes a new secret. A new secret is in the returned view, once."""
    unknown = sorted(set(values) - _FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(unknown)}; known: "
                           f"{', '.join(sorted(_FIELDS))}", field=unknown[0])
    customer = await _customer(session, actor, customer_id, Action.MANAGE_ACCESS)
    row = await session.get(CustomerContacts, customer_id)
    before = _audited(_view(customer_id, row))
    if row is None:
        row = CustomerContacts(customer_id=customer_id, emails=[], webhook_url=None,
                               webhook_secret=None, updated_at=clock())
        session.add(row)
    if "emails" in values:
        row.emails = clean_emails(values["emails"])
    secret = None
    if "webhook_url" in values:
        url = clean_webhook_url(values["webhook_url"])
        if url is None:
            row.webhook_url, row.webhook_secret = None, None
        else:
            if not row.webhook_secret:
                secret = new_secret()
            row.webhook_url = url
    rotate = values.get("rotate_secret", False)
    if not isinstance(rotate, bool):
        raise InvalidInput("rotate_secret must be true or false", field="rotate_secret")
    if rotate:
        if not row.webhook_url:
            raise InvalidInput("there is no webhook whose secret to rotate; set webhook_url",
                               field="rotate_secret")
        secret = new_secret()
    if secret is not None:
        row.webhook_secret = secret
    row.updated_at = clock()
    await session.flush()
    after = _audited(_view(customer_id, row))
    if secret is not None:
        after["webhook_secret"] = "rotated"  # that it changed (the trail redacts the key)
    await audit.record(session, "customer.contacts_update", actor=actor, target_id=customer_id,
                       customer_id=customer.id, before=before, after=after, clock=clock)
    return _view(customer_id, row, secret)


def _audited(view: ContactsView) -> dict[str, Any]:
    return {"emails": list(view.emails), "webhook_url": view.webhook_url,
            "webhook_secret_set": view.webhook_secret_set}
