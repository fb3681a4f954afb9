from vpsapi.auth.router import legacy_router, v1_router
from vpsapi.core.modules import Module
from vpsapi.core.ratelimit import AUTH_TIER, TierRule

MODULE = Module(
    name="auth",
    description="Users, roles, logins, refresh tokens and API keys",
    routers=[legacy_router, v1_router],
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
