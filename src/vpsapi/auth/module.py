from vpsapi.auth.router import legacy_router, v1_router
from vpsapi.core.modules import Module
from vpsapi.core.ratelimit import AUTH_TIER, TierRule

MODULE = Module(
    name="auth",
    description="Users, roles, logins, refresh tokens and API keys",
    routers=[legacy_router, v1_router],
    rate_limit_rules=[
        TierRule("/api/auth/token", AUTH_TIER),
        TierRule("/api/auth/login", AUTH_TIER),
        TierRule("/api/auth/refresh", AUTH_TIER),
        TierRule("/api/v1/auth/login", AUTH_TIER),
        TierRule("/api/v1/auth/refresh", AUTH_TIER),
    ],
)
