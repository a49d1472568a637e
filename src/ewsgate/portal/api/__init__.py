"""The portal's REST API, ``/api/v1``: thin FastAPI routers over the service layer.

Each handler authenticates (:mod:`.deps`: bearer token or session cookie + CSRF), opens one
transaction, calls one service function and serialises the result (:mod:`.schemas`). Errors
of every kind become ``{"error": {"code", "message", "field"?}}`` (:mod:`.errors`). The OpenAPI
document is served at ``/api/v1/openapi.json``.

:data:`router` holds the inventory, access and jobs routes; other parts add their own
routers (Remote Technician sessions, the relay-facing API) next to it in ``create_app``.
"""

from fastapi import APIRouter

from ewsgate.portal.api import access, audit, identity, inventory, jobs

__all__ = ["API_V1", "router"]

API_V1 = "/api/v1"

router = APIRouter(prefix=API_V1)
router.include_router(access.router)
router.include_router(inventory.router)
router.include_router(jobs.router)
router.include_router(identity.router)
router.include_router(audit.router)
