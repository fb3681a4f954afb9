"""Cache and connection-pool figures; ops tasks on the jobs engine (seed 002)."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request, status

from vpsapi.auth.dependencies import AdminUser
from vpsapi.core.db import SessionDep
from vpsapi.ops.audit.service import record_audit
from vpsapi.ops.jobs import accepted, dispatch_job
from vpsapi.ops.performance import service
from vpsapi.ops.performance.cache import OpsCache
from vpsapi.ops.performance.schemas import (
    CacheCleared,
    CacheStats,
    ConnectionStats,
    QueueStatus,
    TaskQueued,
    TaskRequest,
)

router = APIRouter(prefix="", tags=["ops: performance and task queue"])


def _cache(request: Request) -> OpsCache:
    cache: OpsCache = request.app.state.ops_cache
    return cache


@router.get("/api/performance/cache/stats", response_model=CacheStats)
async def cache_stats(request: Request, _admin: AdminUser) -> CacheStats:
    return CacheStats(**await service.cache_stats(_cache(request)))


@router.post("/api/performance/cache/clear", response_model=CacheCleared)
async def clear_cache(request: Request, admin: AdminUser, session: SessionDep) -> CacheCleared:
    cache = _cache(request)
    removed = await cache.clear()
    await record_audit(
        session, admin, "performance.cache.clear", cache.key_prefix, after={"removed": removed}
    )
    return CacheCleared(message="Cache cleared successfully", removed=removed)


@router.get("/api/performance/connections", response_model=ConnectionStats)
async def connections(request: Request, _admin: AdminUser) -> ConnectionStats:
    stats = service.connection_stats(request.app.state.db, request.app.state.redis)
    return ConnectionStats(**stats)


@router.post("/api/tasks/queue", response_model=TaskQueued, status_code=status.HTTP_202_ACCEPTED)
async def queue_task(
    body: TaskRequest,
    request: Request,
    admin: AdminUser,
    session: SessionDep,
    background: BackgroundTasks,
) -> TaskQueued:
    job = await service.queue_task(
        session, request.app.state.settings, admin, body.task, body.params
    )
    await record_audit(
        session, admin, "tasks.queue", body.task, after={"job_id": job.id, "params": body.params}
    )
    # Runs after the response, i.e. after the commit: the worker finds the row.
    background.add_task(dispatch_job, request.app.state.jobs_engine, job.id)
    return TaskQueued(**accepted(job, message="Task queued", task=body.task))


@router.get("/api/tasks/queue/status", response_model=QueueStatus)
async def queue_status(request: Request, _admin: AdminUser, session: SessionDep) -> QueueStatus:
    return QueueStatus(**await service.queue_status(session, request.app.state.settings))
