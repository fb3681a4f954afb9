"""The VPS manager (seed 002): nginx sites and pools, TLS, backups, system, logs, monitoring."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from vpsapi.core.modules import Module
from vpsapi.ops.backups.router import router as backups_router
from vpsapi.ops.logs.router import router as logs_router
from vpsapi.ops.monitoring.router import router as monitoring_router
from vpsapi.ops.nginx.control import NginxControl
from vpsapi.ops.nginx.health import backend_checks
from vpsapi.ops.nginx.router import backends_router, configs_router, pools_router
from vpsapi.ops.performance.router import router as performance_router
from vpsapi.ops.ssl.router import router as ssl_router
from vpsapi.ops.system.router import router as system_router

# Seed 002 is a FastAPI application: its clients expect `{"detail": ...}` error bodies.
SEED_002_PREFIXES = [
    "/api/configs",
    "/api/load-balancer",
    "/api/health",
    "/api/ssl",
    "/api/backup",
    "/api/system",
    "/api/logs",
    "/api/monitoring",
    "/api/performance",
    "/api/tasks",
]


@contextlib.asynccontextmanager
async def ops_lifespan(app: Any) -> AsyncIterator[None]:
    app.state.nginx = NginxControl(app.state.settings)
    async with contextlib.AsyncExitStack() as stack:
        for subsystem_lifespan in SUBSYSTEM_LIFESPANS:
            await stack.enter_async_context(subsystem_lifespan(app))
        yield


# Background work of the ops subsystems (health checks, samplers, schedules), in start order.
SUBSYSTEM_LIFESPANS: list[Any] = [backend_checks]

MODULE = Module(
    name="ops",
    description="VPS manager: nginx sites, pools, TLS, backups, system, logs, monitoring",
    routers=[
        configs_router,
        pools_router,
        backends_router,
        ssl_router,
        backups_router,
        system_router,
        logs_router,
        monitoring_router,
        performance_router,
    ],
    lifespan=ops_lifespan,
    fastapi_error_prefixes=SEED_002_PREFIXES,
)
