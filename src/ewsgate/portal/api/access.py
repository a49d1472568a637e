"""REST: login/logout, the current user, users, role assignments and personal API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ewsgate.portal import auth
from ewsgate.portal.api.deps import Context, CurrentActor, Id, QueryId, session_info
from ewsgate.portal.api.schemas import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenOut,
    LoginRequest,
    MeOut,
    RoleAssignmentCreate,
    RoleAssignmentOut,
    UserCreate,
    UserOut,
    UserUpdate,
)
from ewsgate.portal.services import audit, users
from ewsgate.portal.services.errors import AuthenticationFailed, NotFound
from ewsgate.portal.store.models import User

__all__ = ["router", "set_session_cookie"]

router = APIRouter()


def set_session_cookie(response: Response, ctx_settings: auth.AuthSettings, value: str) -> None:
    """The portal session cookie: HttpOnly, SameSite=Lax, Secure (and ``__Host-``) on HTTPS."""
    response.set_cookie(ctx_settings.cookie_name, value,
                        max_age=int(ctx_settings.session_lifetime.total_seconds()),
                        path="/", httponly=True, samesite="lax", secure=ctx_settings.cookie_secure)


@router.post("/auth/login", tags=["auth"])
async def login(body: LoginRequest, request: Request, response: Response,
                ctx: Context) -> MeOut:
    """Check e-mail and password; set the session cookie. Wrong credentials → 401
    ``invalid_credentials``; too many failures → 429 ``too_many_attempts`` (Retry-After)."""
    client = request.client.host if request.client else None
    try:
        async with ctx.database.transaction() as s:
            result = await auth.login(s, body.email, body.password, settings=ctx.config.auth,
                                      limiter=ctx.login_limiter, clock=ctx.clock,
                                      client_ip=client,
                                      user_agent=request.headers.get("user-agent"))
    except AuthenticationFailed as exc:
        await audit.record_failed_sign_in(ctx.database, body.email, exc.code, clock=ctx.clock)
        raise
    async with ctx.database.transaction() as s:
        user = await s.get(User, result.actor.user_id)
        assert user is not None
        grants = await users.list_role_assignments(s, result.actor, user_id=user.id)
        me = MeOut(user=UserOut.model_validate(user),
                   roles=[RoleAssignmentOut.model_validate(g) for g in grants],
                   csrf_token=result.session.csrf_token,
                   session_expires_at=result.session.expires_at)
    set_session_cookie(response, ctx.config.auth, result.cookie_value)
    return me


@router.post("/auth/logout", status_code=204, tags=["auth"])
async def logout(request: Request, actor: CurrentActor, ctx: Context) -> Response:
    """End the current web session (with a bearer token: nothing to end)."""
    response = Response(status_code=204)
    cookie = request.cookies.get(ctx.config.auth.cookie_name)
    if actor.via == "session" and cookie:
        async with ctx.database.transaction() as s:
            await auth.logout(s, cookie, clock=ctx.clock)
        response.delete_cookie(ctx.config.auth.cookie_name, path="/",
                               secure=ctx.config.auth.cookie_secure, httponly=True,
                               samesite="lax")
    return response


@router.get("/auth/me", tags=["auth"])
async def me(request: Request, actor: CurrentActor, ctx: Context) -> MeOut:
    """Who you are, your roles, and (with the cookie) the CSRF token for changes."""
    info = session_info(request)
    async with ctx.database.transaction() as s:
        user = await users.get_user(s, actor, actor.user_id)
        grants = await users.list_role_assignments(s, actor, user_id=actor.user_id)
        return MeOut(user=UserOut.model_validate(user),
                     roles=[RoleAssignmentOut.model_validate(g) for g in grants],
                     csrf_token=info.csrf_token if info else None,
                     session_expires_at=info.expires_at if info else None)


@router.get("/users", tags=["users"])
async def list_users(actor: CurrentActor, ctx: Context,
                     search: str | None = None) -> list[UserOut]:
    """The dealer's users (Administrators); yourself otherwise."""
    async with ctx.database.transaction() as s:
        return [UserOut.model_validate(u) for u in await users.list_users(s, actor,
                                                                          search=search)]


@router.post("/users", status_code=201, tags=["users"])
async def create_user(body: UserCreate, actor: CurrentActor, ctx: Context) -> UserOut:
    """Create a user (dealer-wide Administrator); 409 ``email_taken`` for a taken e-mail."""
    async with ctx.database.transaction() as s:
        user = await users.create_user(s, actor, body.model_dump(exclude_unset=True),
                                       clock=ctx.clock)
        return UserOut.model_validate(user)


@router.get("/users/{user_id}", tags=["users"])
async def get_user(user_id: Id, actor: CurrentActor, ctx: Context) -> UserOut:
    async with ctx.database.transaction() as s:
        return UserOut.model_validate(await users.get_user(s, actor, user_id))


@router.patch("/users/{user_id}", tags=["users"])
async def update_user(user_id: Id, body: UserUpdate, actor: CurrentActor,
                      ctx: Context) -> UserOut:
    async with ctx.database.transaction() as s:
        user = await users.update_user(s, actor, user_id, body.model_dump(exclude_unset=True),
                                       clock=ctx.clock)
        return UserOut.model_validate(user)


@router.delete("/users/{user_id}", status_code=204, tags=["users"])
async def delete_user(user_id: Id, actor: CurrentActor, ctx: Context) -> Response:
    async with ctx.database.transaction() as s:
        await users.delete_user(s, actor, user_id, clock=ctx.clock)
    return Response(status_code=204)


@router.get("/role-assignments", tags=["users"])
async def list_role_assignments(actor: CurrentActor, ctx: Context,
                                user_id: QueryId = None) -> list[RoleAssignmentOut]:
    """Assignments inside your Administrator scope, and your own."""
    async with ctx.database.transaction() as s:
        rows = await users.list_role_assignments(s, actor, user_id=user_id)
        return [RoleAssignmentOut.model_validate(r) for r in rows]


@router.post("/role-assignments", status_code=201, tags=["users"])
async def create_role_assignment(body: RoleAssignmentCreate, actor: CurrentActor,
                                 ctx: Context) -> RoleAssignmentOut:
    """Grant a role over the dealer (no ``customer_id``) or a customer subtree."""
    async with ctx.database.transaction() as s:
        row = await users.create_role_assignment(s, actor, body.model_dump(exclude_unset=True),
                                                 clock=ctx.clock)
        return RoleAssignmentOut.model_validate(row)


@router.get("/role-assignments/{assignment_id}", tags=["users"])
async def get_role_assignment(assignment_id: Id, actor: CurrentActor,
                              ctx: Context) -> RoleAssignmentOut:
    async with ctx.database.transaction() as s:
        for row in await users.list_role_assignments(s, actor):
            if row.id == assignment_id:
                return RoleAssignmentOut.model_validate(row)
    raise NotFound.of("role assignment", assignment_id)


@router.delete("/role-assignments/{assignment_id}", status_code=204, tags=["users"])
async def delete_role_assignment(assignment_id: Id, actor: CurrentActor,
                                 ctx: Context) -> Response:
    async with ctx.database.transaction() as s:
        await users.delete_role_assignment(s, actor, assignment_id, clock=ctx.clock)
    return Response(status_code=204)


@router.get("/api-tokens", tags=["auth"])
async def list_api_tokens(actor: CurrentActor, ctx: Context) -> list[ApiTokenOut]:
    """Your personal API tokens (never their values)."""
    async with ctx.database.transaction() as s:
        return [ApiTokenOut.model_validate(t) for t in await users.list_api_tokens(s, actor)]


@router.post("/api-tokens", status_code=201, tags=["auth"])
async def create_api_token(body: ApiTokenCreate, actor: CurrentActor,
                           ctx: Context) -> ApiTokenCreated:
    """A new personal API token; its value is in this response only."""
    async with ctx.database.transaction() as s:
        issued = await users.create_api_token(s, actor, body.name, clock=ctx.clock)
        return ApiTokenCreated(id=issued.record.id, name=issued.record.name,
                               created_at=issued.record.created_at, last_used_at=None,
                               token=issued.token)


@router.delete("/api-tokens/{token_id}", status_code=204, tags=["auth"])
async def delete_api_token(token_id: Id, actor: CurrentActor, ctx: Context) -> Response:
    async with ctx.database.transaction() as s:
        await users.delete_api_token(s, actor, token_id)
    return Response(status_code=204)
