"""The one auth dependency family every module uses.

Accepted credentials: `Authorization: Bearer <jwt>`, `Authorization: ApiKey sk_live_…`,
`Authorization: Bearer sk_live_…`; streaming endpoints (SSE, WebSocket) also take
`?access_token=<jwt>` because browsers cannot set headers there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from vpsapi.auth import service
from vpsapi.core.db import SessionDep
from vpsapi.core.errors import Forbidden, TokenRejected, Unauthorized
from vpsapi.core.ratelimit import KeyOwners
from vpsapi.core.security import (
    API_KEY_PREFIX,
    API_KEY_SUBJECT_PREFIX,
    Principal,
    Role,
    TokenCodec,
)

# Declared for OpenAPI (Swagger's Authorize dialog); parsing is ours.
_bearer = HTTPBearer(auto_error=False, description="JWT access token or sk_live_ API key")
_api_key_header = APIKeyHeader(
    name="Authorization",
    scheme_name="ApiKeyAuth",
    auto_error=False,
    description="`ApiKey sk_live_…`",
)


async def get_codec(request: Request) -> TokenCodec:
    codec: TokenCodec = request.app.state.codec
    return codec


CodecDep = Annotated[TokenCodec, Depends(get_codec)]


def client_ip(request: HTTPConnection) -> str | None:
    return request.client.host if request.client else None


async def _resolve(
    request: HTTPConnection, session: SessionDep, codec: TokenCodec, credential: str
) -> Principal:
    is_key = credential.startswith(API_KEY_PREFIX)
    try:
        if is_key:
            principal = await service.principal_from_api_key(
                session, credential, client_ip(request)
            )
        else:
            principal = await service.principal_from_token(session, codec, credential)
    except Unauthorized as exc:
        # A revoked or expired key (or a token of one) counts as nobody's from now on.
        if (owners := _key_owners(request)) is not None:
            owners.forget(_key_reference(codec, credential))
        if not is_key:  # a refused key is logged by the service, as every key attempt
            _log_rejected_token(request, exc)
        raise
    if principal.api_key_id is not None and (owners := _key_owners(request)) is not None:
        reference = (
            KeyOwners.of_key(credential)
            if is_key
            else f"{API_KEY_SUBJECT_PREFIX}{principal.api_key_id}"
        )
        owners.learn(reference, principal.subject)
    request.state.user_id = principal.user_id or principal.subject
    request.state.principal = principal
    request.scope.setdefault("state", {})["user_id"] = principal.user_id or principal.subject
    return principal


def _log_rejected_token(request: HTTPConnection, exc: Unauthorized) -> None:
    """The one place a refused token is written to the security log."""
    service.security_log.warning(
        "token_rejected",
        reason=exc.message,
        method=request.scope.get("method", "WEBSOCKET"),
        path=request.url.path,
        ip=client_ip(request),
    )


def _key_owners(request: HTTPConnection) -> KeyOwners | None:
    """The rate limiter's map of API key owners; None with rate limiting off."""
    owners: KeyOwners | None = request.app.state.key_owners
    return owners


def _key_reference(codec: TokenCodec, credential: str) -> str:
    """How the rate limiter names a key credential (see `KeyOwners`)."""
    if credential.startswith(API_KEY_PREFIX):
        return KeyOwners.of_key(credential)
    return codec.peek_subject(credential) or ""


def _header_credential(request: HTTPConnection) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "apikey":
        if value.startswith(API_KEY_PREFIX):
            return value
        raise Unauthorized("Invalid API key")
    # Seed 000: anything but `Bearer <token>` is "No token provided".
    raise Unauthorized("No token provided")


class _HeaderPrincipal(HTTPBearer):
    """The caller named by the Authorization header. It is an `HTTPBearer` only to be
    declared as one in OpenAPI: each request pays for one dependency instead of three (the
    declaration's own header parsing, the codec's lookup, and this), on every route."""

    async def __call__(  # type: ignore[override]
        self,
        request: Request,
        session: SessionDep,
        _k: Annotated[str | None, Depends(_api_key_header)] = None,
    ) -> Principal:
        credential = _header_credential(request)
        if credential is None:
            raise Unauthorized("No token provided")
        return await _resolve(request, session, request.app.state.codec, credential)


get_principal = _HeaderPrincipal(
    scheme_name=_bearer.scheme_name,
    auto_error=False,
    description=_bearer.model.description,
)


async def get_stream_principal(
    request: HTTPConnection,  # a Request (SSE) or a WebSocket
    session: SessionDep,
    codec: CodecDep,
    _b: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> Principal:
    credential = _header_credential(request) or request.query_params.get("access_token")
    if not credential:
        raise Unauthorized("No token provided")
    if credential.startswith(API_KEY_PREFIX) and "access_token" in request.query_params:
        # Keys in URLs end up in proxy logs: only short-lived JWTs are accepted there.
        raise Unauthorized("Use a JWT access token in access_token, not an API key")
    return await _resolve(request, session, codec, credential)


async def get_header_credential(
    request: Request,
    _b: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
    _k: Annotated[str | None, Depends(_api_key_header)] = None,
) -> AsyncIterator[str | None]:
    """The credential in the Authorization header, unchecked: logout checks it itself, as
    an expired access token beside a valid refresh token still ends the login. A token it
    refuses (either one) is logged here as on every other route."""
    try:
        yield _header_credential(request)
    except TokenRejected as exc:
        _log_rejected_token(request, exc)
        raise


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
HeaderCredential = Annotated[str | None, Depends(get_header_credential)]
StreamPrincipal = Annotated[Principal, Depends(get_stream_principal)]


async def get_current_user(principal: CurrentPrincipal) -> Principal:
    if principal.user_id is None:
        raise Forbidden("This endpoint needs a user account (log in, or use a personal API key)")
    return principal


CurrentUser = Annotated[Principal, Depends(get_current_user)]


def require_role(minimum: Role) -> Callable[..., Awaitable[Principal]]:
    """Dependency: the caller must have `minimum` role or higher (admin > manager > user)."""

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if not principal.has_role(minimum):
            raise Forbidden(f"This action requires the {minimum} role")
        return principal

    dependency.__name__ = f"require_{minimum}"
    return dependency


AdminUser = Annotated[Principal, Depends(require_role("admin"))]
ManagerUser = Annotated[Principal, Depends(require_role("manager"))]
