from vpsapi.core.modules import Module
from vpsapi.core.ratelimit import TierRule
from vpsapi.info.router import router

MODULE = Module(
    name="info",
    description="Service description and cross-module search",
    routers=[router],
    rate_limit_rules=[TierRule("/api/v1/search", "search")],
)
