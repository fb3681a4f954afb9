"""The VPS manager (seed 002): nginx sites and pools, TLS, backups, system, logs, monitoring."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends

from vpsapi.core.modules import Module
from vpsapi.ops.backups.router import router as backups_router
from vpsapi.ops.backups.schedule import lifespan as backup_retention_lifespan
from vpsapi.ops.dependencies import audit_failed_changes
from vpsapi.ops.logs.background import lifespan as logs_lifespan
from vpsapi.ops.logs.router import router as logs_router
from vpsapi.ops.monitoring.router import router as monitoring_router
from vpsapi.ops.monitoring.sampler import lifespan as monitoring_lifespan
from vpsapi.ops.nginx.control import NginxControl
from vpsapi.ops.nginx.health import backend_checks
from vpsapi.ops.nginx.router import backends_router, configs_router, pools_router
from vpsapi.ops.performance.lifespan import lifespan as performance_lifespan
from vpsapi.ops.performance.router import router as performance_router
from vpsapi.ops.ssl.router import router as ssl_router
from vpsapi.ops.ssl.schedule import lifespan as ssl_renewal_lifespan
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
SUBSYSTEM_LIFESPANS: list[Any] = [
    backend_checks,
    logs_lifespan,
    ssl_renewal_lifespan,
    backup_retention_lifespan,
    performance_lifespan,  # the ops cache, used by system status
    monitoring_lifespan,
]

# One parent router, so every ops route audits the changes that fail (the function scope
# sees the endpoint's error before it becomes a response).
audited_routes = APIRouter(dependencies=[Depends(audit_failed_changes, scope="function")])
for ops_router in (
    configs_router,
    pools_router,
    backends_router,
    ssl_router,
    backups_router,
    system_router,
    logs_router,
    monitoring_router,
    performance_router,
):
    audited_routes.include_router(ops_router)

MODULE = Module(
    name="ops",
    description="VPS manager: nginx sites, pools, TLS, backups, system, logs, monitoring",
    routers=[audited_routes],
    lifespan=ops_lifespan,
    fastapi_error_prefixes=SEED_002_PREFIXES,
)
