"""REST API of customer policies and session requests.

=======  ==================================================  ================================
GET      /api/v1/customers/{id}/policy                       the customer's own settings
PUT      /api/v1/customers/{id}/policy                       replace them (Administrator)
GET      /api/v1/customers/{id}/effective-policy             what is in force there
GET      /api/v1/devices/{id}/effective-policy               what is in force on a device
POST     /api/v1/devices/{id}/session-requests               ask for a session
                                                             ``{reason, ticket, read_only}``:
                                                             201 ``{session}`` when no approval
                                                             is needed, 202 ``{request}`` else
GET      /api/v1/session-requests?status=pending             requests the caller may answer
                                                             or made (``status=all``: every one)
GET      /api/v1/session-requests/{id}                       one request (who answered, why)
POST     /api/v1/session-requests/{id}/approve               ``{reason?}`` → 200 ``{request,
                                                             session}``
POST     /api/v1/session-requests/{id}/deny                  ``{reason}`` → 200 ``{request}``
=======  ==================================================  ================================
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ewsgate.portal.api.deps import Context, CurrentActor, Id
from ewsgate.portal.services import devices as device_service
from ewsgate.portal.services import policies
from ewsgate.portal.services.access import load_tree
from ewsgate.portal.services.errors import InvalidInput
from ewsgate.portal.sessions.gate import clean_purpose
from ewsgate.portal.sessions.runtime import remote_technician_of

__all__ = ["body_of", "router"]

router = APIRouter(prefix="/api/v1", tags=["policy"])


def _ok(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


async def body_of(request: Request) -> dict[str, Any]:
    """The JSON object of the request (an empty body is ``{}``)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise InvalidInput("the request body is not JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidInput("the request body must be a JSON object", code="invalid_json")
    return data


@router.get("/customers/{customer_id}/policy")
async def get_policy(customer_id: Id, actor: CurrentActor, ctx: Context) -> JSONResponse:
    """The customer's own policy settings (null: inherited from its parent or the default)."""
    async with ctx.database.transaction() as s:
        policy = await policies.get_policy(s, actor, customer_id)
    return _ok({"customer_id": customer_id, "policy": policy.as_json()})


@router.put("/customers/{customer_id}/policy")
async def put_policy(customer_id: Id, actor: CurrentActor, ctx: Context,
                     request: Request) -> JSONResponse:
    """Replace the customer's own settings; a child can only tighten its parent's."""
    data = await body_of(request)
    async with ctx.database.transaction() as s:
        policy = await policies.set_policy(s, actor, customer_id, data.get("policy", data),
                                           clock=ctx.clock)
        effective = await policies.get_effective_policy(s, actor, customer_id)
    return _ok({"customer_id": customer_id, "policy": policy.as_json(),
                "effective": effective.as_json()})


@router.get("/customers/{customer_id}/effective-policy")
async def effective_policy(customer_id: Id, actor: CurrentActor, ctx: Context) -> JSONResponse:
    """The policy in force on the customer (its chain folded, defaults filled in)."""
    async with ctx.database.transaction() as s:
        policy = await policies.get_effective_policy(s, actor, customer_id)
    return _ok({"customer_id": customer_id, "policy": policy.as_json()})


@router.get("/devices/{device_id}/effective-policy")
async def device_policy(device_id: Id, actor: CurrentActor, ctx: Context) -> JSONResponse:
    """The policy in force on a device (its customer's effective policy)."""
    async with ctx.database.transaction() as s:
        device = await device_service.get_device(s, actor, device_id)
        customer_id = await device_service.device_customer_id(s, device)
        policy = await policies.effective_for_customer(
            s, customer_id, await load_tree(s, actor.dealer_id))
    return _ok({"device_id": device_id, "customer_id": customer_id, "policy": policy.as_json()})


@router.post("/devices/{device_id}/session-requests")
async def request_session(device_id: Id, actor: CurrentActor, request: Request) -> JSONResponse:
    """Ask for a session: it opens at once (201) unless the policy requires approval (202)."""
    rt = remote_technician_of(request.app)
    data = await body_of(request)
    purpose = clean_purpose(data.get("reason"), data.get("ticket"), data.get("read_only"))
    outcome = await rt.requests.ask(actor, device_id, purpose)
    if outcome.session is not None:
        return _ok({"session": outcome.session.as_json(rt.clock()), "request": None}, 201)
    assert outcome.request is not None
    return _ok({"session": None, "request": outcome.request.as_json()}, 202)


@router.get("/session-requests")
async def list_requests(actor: CurrentActor, request: Request,
                        status: str = "pending") -> JSONResponse:
    """Requests the caller may answer or made (``status``: pending, …, or ``all``)."""
    rt = remote_technician_of(request.app)
    if status not in ("all", "pending", "approved", "denied", "expired", "used"):
        raise InvalidInput("status must be pending, approved, denied, expired, used or all",
                           code="invalid", field="status")
    rows = await rt.requests.list(actor, status=None if status == "all" else status)
    return _ok({"requests": [r.as_json() for r in rows]})


@router.get("/session-requests/{request_id}")
async def get_request(request_id: Id, actor: CurrentActor, request: Request) -> JSONResponse:
    """One request: its status, who answered it and why."""
    rt = remote_technician_of(request.app)
    return _ok((await rt.requests.get(actor, request_id)).as_json())


@router.post("/session-requests/{request_id}/approve")
async def approve(request_id: Id, actor: CurrentActor, request: Request) -> JSONResponse:
    """Approve (Customer Approver or Administrator; not one's own): the session opens."""
    rt = remote_technician_of(request.app)
    data = await body_of(request)
    view, session = await rt.requests.approve(actor, request_id, data.get("reason"))
    return _ok({"request": view.as_json(), "session": session.as_json(rt.clock())})


@router.post("/session-requests/{request_id}/deny")
async def deny(request_id: Id, actor: CurrentActor, request: Request) -> JSONResponse:
    """Deny with a reason the technician will see."""
    rt = remote_technician_of(request.app)
    data = await body_of(request)
    return _ok({"request": (await rt.requests.deny(actor, request_id,
                                                   data.get("reason"))).as_json()})
