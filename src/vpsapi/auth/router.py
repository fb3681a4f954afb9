"""Auth HTTP layer: seed-001 `/api/v1` endpoints and seed-000/002 `/api/auth` ones."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.auth import service
from vpsapi.auth.dependencies import (
    AdminUser,
    CodecDep,
    CurrentUser,
    HeaderCredential,
    client_ip,
)
from vpsapi.auth.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    ApiTokenResponse,
    LoginData,
    LoginRequest,
    LogoutRequest,
    MeData,
    OAuthLoginRequest,
    OAuthTokenResponse,
    RefreshRequest,
    TokenPair,
    UserCreate,
    UserOut,
    UserUpdate,
)
from vpsapi.core.db import SessionDep
from vpsapi.core.errors import Conflict, ValidationFailed
from vpsapi.core.schemas import (
    V1_ERROR_RESPONSES,
    Envelope,
    MessageData,
    Page,
    envelope,
    patch_changes,
    read_body_fields,
    validated_body,
)
from vpsapi.core.security import TokenCodec

legacy_router = APIRouter(prefix="/api/auth", tags=["auth"])
v1_router = APIRouter(prefix="/api/v1", tags=["auth (v1)"], responses=V1_ERROR_RESPONSES)


# ---- seed 000 / 002: /api/auth ---------------------------------------------------------


@legacy_router.post(
    "/token",
    response_model=ApiTokenResponse,
    summary="Exchange an API key for a JWT (seed 000)",
    responses={401: {"description": '`{"error": "Invalid API key"}`'}},
)
async def issue_token(
    request: Request,
    session: SessionDep,
    codec: CodecDep,
    x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None,
) -> ApiTokenResponse:
    token = await service.exchange_api_key(
        session, codec, request.app.state.settings, x_api_key, client_ip(request)
    )
    return ApiTokenResponse(token=token, expires_in=codec.access_ttl)


_LOGIN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": OAuthLoginRequest.model_json_schema()},
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["username", "password"],
                    "properties": {
                        "username": {"type": "string", "description": "username or email"},
                        "password": {"type": "string", "format": "password"},
                        "grant_type": {"type": "string"},
                    },
                }
            },
        },
    }
}


async def _read_login(request: Request) -> OAuthLoginRequest:
    return validated_body(OAuthLoginRequest, await read_body_fields(request))


def _oauth_answer(tokens: service.IssuedTokens) -> dict[str, Any]:
    return {
        "access_token": tokens.access_token,
        "token_type": "bearer",
        "expires_in": tokens.expires_in,
        "refresh_token": tokens.refresh_token,
        "token": tokens.access_token,
        "user": UserOut.model_validate(tokens.user).model_dump(by_alias=True, mode="json"),
    }


@legacy_router.post(
    "/login",
    response_model=OAuthTokenResponse,
    response_model_by_alias=True,
    summary="Log in with username or email (JSON or OAuth2 password form; seed 002)",
    responses={401: {"description": "Invalid username or password, or a disabled account"}},
    openapi_extra=_LOGIN_BODY,
)
async def oauth_login(request: Request, session: SessionDep, codec: CodecDep) -> dict[str, Any]:
    body = await _read_login(request)
    tokens = await service.login(
        session,
        codec,
        login_name=body.username or body.email or "",
        password=body.password,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    return _oauth_answer(tokens)


async def _rotate(
    request: Request, body: RefreshRequest, session: AsyncSession, codec: TokenCodec
) -> service.IssuedTokens:
    """Both refresh routes' rotation, with the reuse leeway of the settings."""
    return await service.refresh(
        session,
        codec,
        body.refresh_token,
        ip=client_ip(request),
        reuse_seconds=request.app.state.settings.jwt_refresh_reuse_seconds,
    )


@legacy_router.post(
    "/refresh",
    response_model=OAuthTokenResponse,
    summary="Rotate a refresh token",
    responses={401: {"description": "Invalid, revoked or reused refresh token"}},
)
async def oauth_refresh(
    request: Request, body: RefreshRequest, session: SessionDep, codec: CodecDep
) -> dict[str, Any]:
    tokens = await _rotate(request, body, session, codec)
    return _oauth_answer(tokens)


@legacy_router.post("/logout", response_model=MessageData, summary="Revoke this login")
async def oauth_logout(
    request: Request,
    credential: HeaderCredential,
    session: SessionDep,
    codec: CodecDep,
    body: LogoutRequest | None = None,
) -> MessageData:
    refresh_token = body.refresh_token if body else None
    await service.logout(session, codec, credential, refresh_token, ip=client_ip(request))
    return MessageData(message="Logged out")


@legacy_router.get("/me", response_model=UserOut, summary="The logged-in user")
async def oauth_me(principal: CurrentUser, session: SessionDep) -> UserOut:
    return UserOut.model_validate(await service.get_caller(session, principal))


# ---- seed 001: /api/v1 -----------------------------------------------------------------


@v1_router.post("/auth/login", response_model=Envelope[LoginData], tags=["auth (v1)"])
async def login(
    request: Request, body: LoginRequest, session: SessionDep, codec: CodecDep
) -> Envelope[LoginData]:
    tokens = await service.login(
        session,
        codec,
        login_name=body.email,
        password=body.password,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    return envelope(
        LoginData(
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_in=tokens.expires_in,
            user=UserOut.model_validate(tokens.user),
        )
    )


@v1_router.post("/auth/refresh", response_model=Envelope[TokenPair])
async def refresh(
    request: Request, body: RefreshRequest, session: SessionDep, codec: CodecDep
) -> Envelope[TokenPair]:
    tokens = await _rotate(request, body, session, codec)
    return envelope(
        TokenPair(
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_in=tokens.expires_in,
        )
    )


@v1_router.post("/auth/logout", response_model=Envelope[MessageData])
async def logout(
    request: Request,
    credential: HeaderCredential,
    session: SessionDep,
    codec: CodecDep,
    body: LogoutRequest | None = None,
) -> Envelope[MessageData]:
    refresh_token = body.refresh_token if body else None
    await service.logout(session, codec, credential, refresh_token, ip=client_ip(request))
    return envelope(MessageData(message="Logged out"))


@v1_router.get("/me", response_model=Envelope[MeData])
async def me(principal: CurrentUser, session: SessionDep) -> Envelope[MeData]:
    user = await service.get_caller(session, principal)
    return envelope(MeData(user=UserOut.model_validate(user)))


@v1_router.post(
    "/api-keys", response_model=Envelope[ApiKeyCreated], status_code=status.HTTP_201_CREATED
)
async def create_api_key(
    body: ApiKeyCreate, principal: CurrentUser, session: SessionDep
) -> Envelope[ApiKeyCreated]:
    api_key, key = await service.create_api_key(
        session, principal.user_id or "", body.name, body.expires_in_days
    )
    out = ApiKeyOut.model_validate(api_key).model_dump()
    return envelope(ApiKeyCreated(**out, key=key))


@v1_router.get("/api-keys", response_model=Envelope[list[ApiKeyOut]])
async def list_api_keys(
    principal: CurrentUser,
    session: SessionDep,
    all_users: Annotated[bool, Query(alias="all", description="admins: every user's keys")] = False,
) -> Envelope[list[ApiKeyOut]]:
    owner = None if (all_users and principal.is_admin) else principal.user_id
    keys = await service.list_api_keys(session, owner)
    return envelope([ApiKeyOut.model_validate(k) for k in keys])


@v1_router.delete("/api-keys/{key_id}", response_model=Envelope[ApiKeyOut])
async def revoke_api_key(
    key_id: str, principal: CurrentUser, session: SessionDep
) -> Envelope[ApiKeyOut]:
    owner = None if principal.is_admin else principal.user_id
    return envelope(ApiKeyOut.model_validate(await service.revoke_api_key(session, key_id, owner)))


_TAKEN = "A user with this email or username already exists"


@v1_router.post(
    "/users",
    response_model=Envelope[UserOut],
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": _TAKEN}},
)
async def create_user(
    body: UserCreate, _admin: AdminUser, session: SessionDep
) -> Envelope[UserOut]:
    user = await service.create_user(
        session,
        email=body.email,
        password=body.password,
        role=body.role,
        username=body.username,
        organization_id=body.organization_id,
    )
    return envelope(UserOut.model_validate(user))


# Beyond any real user count, and within every database's integer range.
MAX_OFFSET = 1_000_000_000


@v1_router.get(
    "/users",
    response_model=Envelope[Page[UserOut]],
    summary="Users, oldest first",
    responses={400: {"description": "Invalid cursor"}},
)
async def list_users(
    _admin: AdminUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[
        int | None,
        Query(ge=0, le=MAX_OFFSET, description="users to skip; not with `cursor`"),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(
            max_length=512,
            description="`nextCursor` of the previous page: the next page starts after its "
            "last user, whatever was deleted or added meanwhile; not with `offset`",
        ),
    ] = None,
) -> Envelope[Page[UserOut]]:
    if offset is not None and cursor is not None:
        # Neither can say where the other's page starts: refused rather than one ignored.
        raise ValidationFailed(
            [
                {"field": "offset", "message": "cannot be sent with cursor"},
                {"field": "cursor", "message": "cannot be sent with offset"},
            ]
        )
    users, next_cursor = await service.list_users(
        session, limit=limit, offset=offset or 0, cursor=cursor
    )
    return envelope(
        Page[UserOut](items=[UserOut.model_validate(u) for u in users], next_cursor=next_cursor)
    )


@v1_router.get("/users/{user_id}", response_model=Envelope[UserOut])
async def get_user(user_id: str, _admin: AdminUser, session: SessionDep) -> Envelope[UserOut]:
    return envelope(UserOut.model_validate(await service.get_user(session, user_id)))


@v1_router.patch(
    "/users/{user_id}",
    response_model=Envelope[UserOut],
    responses={409: {"description": f"{_TAKEN}; or the last admin demoted or disabled"}},
)
async def update_user(
    user_id: str, body: UserUpdate, admin: AdminUser, session: SessionDep
) -> Envelope[UserOut]:
    changes = patch_changes(body, nullable={"organization_id"})
    user = await service.get_user(session, user_id)
    demotes_self = user.id == admin.user_id and (
        changes.get("role", "admin") != "admin" or changes.get("is_active") is False
    )
    if demotes_self and await service.count_admins(session) <= 1:
        raise Conflict("Cannot demote or disable the last admin")
    user = await service.update_user(session, user, **changes)
    return envelope(UserOut.model_validate(user))


@v1_router.delete(
    "/users/{user_id}",
    response_model=Envelope[MessageData],
    responses={409: {"description": "You cannot delete your own account"}},
)
async def delete_user(user_id: str, admin: AdminUser, session: SessionDep) -> Envelope[MessageData]:
    user = await service.get_user(session, user_id)
    if user.id == admin.user_id:
        raise Conflict("You cannot delete your own account")
    await service.delete_user(session, user)
    return envelope(MessageData(message="User deleted"))
