from vpsapi.citypulse import realtime
from vpsapi.citypulse.router import router
from vpsapi.citypulse.runtime import lifespan
from vpsapi.citypulse.search import BuildingSearch
from vpsapi.core.modules import Module
from vpsapi.core.ratelimit import TierRule

MODULE = Module(
    name="citypulse",
    description="Buildings, sensors and time-series readings (seed 004)",
    routers=[router],
    lifespan=lifespan,
    # After the routers, so the ops module's plain WebSocket /ws/monitoring still wins.
    mounts=[("/ws", realtime.mount)],
    search_providers=[BuildingSearch()],
    enabled_by="citypulse_enabled",
    rate_limit_rules=[
        TierRule("/api/v1/citypulse", "citypulse"),
        TierRule("/api/v1/ai", "ai"),
        TierRule("/api/v1/swarm", "swarm"),
    ],
)
