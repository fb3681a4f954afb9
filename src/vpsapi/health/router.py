"""Liveness, readiness and Prometheus metrics (never rate limited; seed 003's
`/api/health`, under `/api`, is counted as the rest of `/api`)."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any, Literal

import psutil
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from vpsapi.core.memory import memory_in_use_percent
from vpsapi.core.metrics import render_metrics
from vpsapi.core.timestamps import js_now

router = APIRouter(tags=["health"])

MEMORY_LIMIT_PERCENT = 90  # seed 004: "Memory Usage < 90%"
SLOW_AVERAGE_SECONDS = 1.0  # seed 004: "Average Response Time < 1s"

_process = psutil.Process()


class MemoryInfo(BaseModel):
    """The fields of Node's `process.memoryUsage()`, which seed 000 returns."""

    rss: int
    heapTotal: int
    heapUsed: int
    external: int
    arrayBuffers: int


class HealthOut(BaseModel):
    success: bool = True
    status: Literal["healthy"] = "healthy"
    timestamp: str
    uptime: float
    memory: MemoryInfo
    version: str


class ReadyOut(BaseModel):
    success: bool
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]
    errors: dict[str, str] | None = None
    notes: dict[str, str] | None = None


@router.get(
    "/health", response_model=HealthOut, summary="Liveness with process figures (seed 000/001)"
)
async def health(request: Request) -> HealthOut:
    from vpsapi import __version__

    mem = _process.memory_info()
    # Node's figures have no exact Python twins: the data segment (allocated heap),
    # resident private memory, resident shared memory (libraries, as Node's `external` is
    # memory outside its heap) and no array buffers.
    return HealthOut(
        timestamp=js_now(),
        uptime=round(time.monotonic() - request.app.state.started_at, 3),
        memory=MemoryInfo(
            rss=mem.rss,
            heapTotal=getattr(mem, "data", mem.vms),
            heapUsed=mem.rss - getattr(mem, "shared", 0),
            external=getattr(mem, "shared", 0),
            arrayBuffers=0,
        ),
        version=__version__,
    )


@router.get("/health/live", summary="Liveness probe: the process answers")
async def live() -> dict[str, Any]:
    return {"success": True, "status": "alive", "timestamp": js_now()}


async def _check(name: str, probe: Any) -> tuple[str, str, str | None]:
    try:
        await asyncio.wait_for(probe(), timeout=3)
    except Exception as exc:
        return name, "unhealthy", f"{type(exc).__name__}: {exc}"[:200]
    return name, "healthy", None


@router.get(
    "/health/ready",
    response_model=ReadyOut,
    summary="Readiness probe: database, Redis, the modules' dependencies (storage); the "
    "memory in use and the average response time, reported",
    responses={503: {"model": ReadyOut, "description": "A dependency is down"}},
)
async def ready(request: Request) -> JSONResponse:
    state = request.app.state
    probes = [_check("database", state.db.ping)]
    checks: dict[str, str] = {}
    notes: dict[str, str] = {}
    if state.redis is not None:
        probes.append(_check("redis", state.redis.ping))
    else:
        # Seed 001 reads `redis: healthy`; without one its work is done in this process,
        # which works when this answers at all.
        checks["redis"] = "healthy"
        notes["redis"] = "not configured: limits, events and the job queue are in-process"
    for module in state.modules:
        for name, probe in module.readiness_checks:
            probes.append(_check(name, functools.partial(probe, request.app)))
    errors: dict[str, str] = {}
    for name, status, error in await asyncio.gather(*probes):
        checks[name] = status
        if error:
            errors[name] = error
    # Seed 004's two other checks, reported without deciding readiness: memory (of the
    # container's limit when there is one; on a shared host every process there would be
    # taken out of rotation at once) and slowness (out of rotation, a slow process hands
    # its load to the others).
    high = memory_in_use_percent() >= MEMORY_LIMIT_PERCENT
    checks["memory"] = "high" if high else "healthy"
    average = state.response_times.average()
    slow = average is not None and average >= SLOW_AVERAGE_SECONDS
    checks["responseTime"] = "slow" if slow else "healthy"
    ok = not errors
    body = ReadyOut(
        success=ok,
        status="ready" if ok else "not_ready",
        checks=checks,
        errors=errors or None,
        notes=notes or None,
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=200 if ok else 503)


class DependencyHealthOut(BaseModel):
    """Seed 003's `GET /api/health` (its router is mounted on `/api`)."""

    uptime: float = Field(description="seconds")
    timestamp: int = Field(description="Unix milliseconds, as `Date.now()`")
    status: Literal["OK", "ERROR"]
    database: Literal["OK", "ERROR"]
    redis: Literal["OK", "ERROR"] = Field(description="OK without REDIS_URL: in-process")


@router.get(
    "/api/health",
    response_model=DependencyHealthOut,
    summary="Database and Redis answer (seed 003): 503 when one does not",
    responses={503: {"model": DependencyHealthOut, "description": "A dependency is down"}},
)
async def dependency_health(request: Request) -> JSONResponse:
    state = request.app.state
    probes = [_check("database", state.db.ping)]
    if state.redis is not None:
        probes.append(_check("redis", state.redis.ping))
    results = {name: status == "healthy" for name, status, _ in await asyncio.gather(*probes)}
    results.setdefault("redis", True)
    ok = all(results.values())
    body = DependencyHealthOut(
        uptime=round(time.monotonic() - state.started_at, 3),
        timestamp=int(time.time() * 1000),
        status="OK" if ok else "ERROR",
        database="OK" if results["database"] else "ERROR",
        redis="OK" if results["redis"] else "ERROR",
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    payload, content_type = render_metrics()
    return Response(payload, media_type=content_type)
