from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog

from vpsapi.auth import service
from vpsapi.auth.router import legacy_router, v1_router
from vpsapi.core.modules import Module
from vpsapi.core.ratelimit import AUTH_TIER, TierRule
from vpsapi.core.tasks import periodic

log = structlog.get_logger("vpsapi.auth")

RETENTION_INTERVAL = 3600.0


async def _purge(app: Any) -> None:
    purged = await service.purge_ended(app.state.db, app.state.settings)
    if purged.logins or purged.api_keys:
        # `keys`: a field named `api_keys` would be masked as a secret in the log.
        log.info("auth_purged", logins=purged.logins, keys=purged.api_keys)


@contextlib.asynccontextmanager
async def auth_lifespan(app: Any) -> AsyncIterator[None]:
    async with periodic("auth-retention", RETENTION_INTERVAL, lambda: _purge(app)):
        yield


MODULE = Module(
    name="auth",
    description="Users, roles, logins, refresh tokens and API keys",
    routers=[legacy_router, v1_router],
    lifespan=auth_lifespan,
    # Seed 002 (a FastAPI app) signs in here: its clients read FastAPI's `detail`.
    fastapi_error_prefixes=[
        "/api/auth/login",
        "/api/auth/logout",
        "/api/auth/me",
        "/api/auth/refresh",
    ],
    rate_limit_rules=[
        # Seed 000's /api/auth/token stays on the default tier, the only limit it names;
        # failed refreshes do not use up the attempts a user needs to sign in again.
        TierRule("/api/auth/login", AUTH_TIER, bucket="auth-login", held_while_checked=True),
        TierRule("/api/v1/auth/login", AUTH_TIER, bucket="auth-login", held_while_checked=True),
        TierRule("/api/auth/refresh", AUTH_TIER, bucket="auth-refresh"),
        TierRule("/api/v1/auth/refresh", AUTH_TIER, bucket="auth-refresh"),
    ],
)
