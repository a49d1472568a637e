"""The portal's service layer: every read and write of the inventory, access and jobs, with the
role checks in one place. The web UI and the REST API both call these functions; neither
touches the tables for anything a role could restrict.

Calling convention::

    async with database.transaction() as session:        # commit on success, rollback on error
        device = await devices.get_device(session, actor, device_id)

* ``actor`` (:class:`~.access.Actor`) comes from :mod:`ewsgate.portal.auth`
  (``session_from_cookie`` / ``actor_from_bearer``) or :func:`~.access.actor_for`.
* Inputs are plain mappings of field → value (JSON or form strings); unknown fields are refused.
* Errors are :class:`~.errors.ServiceError` subclasses with ``code``, ``status``, ``message``
  and ``field``; out-of-scope objects raise :class:`~.errors.NotFound`.

Modules: :mod:`.access` (roles, scopes, the permission table), :mod:`.customers`,
:mod:`.installations`, :mod:`.devices`, :mod:`.users`, :mod:`.jobs`, :mod:`.relays`,
:mod:`.validation`, :mod:`.errors`; :mod:`.audit` records every change in the audit trail, in
the caller's transaction, and reads it back (:mod:`.audit_export`: CSV and JSON lines).
"""

from ewsgate.portal.services import (
    access,
    customers,
    devices,
    errors,
    installations,
    jobs,
    policies,
    relays,
    users,
    validation,
)
from ewsgate.portal.services.access import PERMISSIONS, Action, Actor, Assignment, actor_for
from ewsgate.portal.services.devices import authorize_open_session, can_open_session
from ewsgate.portal.services.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServiceError,
)

__all__ = [
    "PERMISSIONS",
    "Action",
    "Actor",
    "Assignment",
    "AuthenticationFailed",
    "Conflict",
    "InvalidInput",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ServiceError",
    "access",
    "actor_for",
    "authorize_open_session",
    "can_open_session",
    "customers",
    "devices",
    "errors",
    "installations",
    "jobs",
    "policies",
    "relays",
    "users",
    "validation",
]
