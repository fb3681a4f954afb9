"""Cache and connection-pool figures, and ops tasks queued on the jobs engine."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.config import Settings
from vpsapi.core.db import Database
from vpsapi.core.errors import Unprocessable
from vpsapi.core.security import Principal
from vpsapi.jobs.models import JobRecord
from vpsapi.jobs.service import JobView
from vpsapi.ops.audit.service import actor_name
from vpsapi.ops.jobs import submit_ops_job
from vpsapi.ops.performance.cache import OpsCache
from vpsapi.ops.performance.tasks import PROCESSING_TYPE, available_tasks, task_options

REDIS_INFO_FIELDS = (
    "redis_version",
    "used_memory",
    "used_memory_human",
    "used_memory_peak_human",
    "maxmemory",
    "keyspace_hits",
    "keyspace_misses",
    "evicted_keys",
    "expired_keys",
    "connected_clients",
)


async def cache_stats(cache: OpsCache) -> dict[str, Any]:
    counters = cache.counters
    lookups = counters.hits + counters.misses
    stats: dict[str, Any] = {
        "backend": "redis" if cache.redis is not None else "memory",
        "key_prefix": cache.key_prefix if cache.redis is not None else None,
        "entries": len(await cache.keys()),
        # This process's lookups (each process counts its own).
        "hits": counters.hits,
        "misses": counters.misses,
        "sets": counters.sets,
        "errors": counters.errors,
        "hit_rate": round(counters.hits / lookups, 4) if lookups else None,
        "redis": None,
    }
    if cache.redis is not None:
        stats["redis"] = await redis_info(cache.redis)
    return stats


async def redis_info(redis: Redis) -> dict[str, Any]:
    try:
        info = await redis.info()
        keyspace = await redis.info("keyspace")
    except RedisError as exc:
        return {"connected": False, "error": str(exc)}
    shown: dict[str, Any] = {name: info.get(name) for name in REDIS_INFO_FIELDS}
    hits, misses = info.get("keyspace_hits", 0), info.get("keyspace_misses", 0)
    shown["hit_rate"] = round(hits / (hits + misses), 4) if hits + misses else None
    return {"connected": True, **shown, "keyspace": keyspace}


def connection_stats(db: Database, redis: Redis | None) -> dict[str, Any]:
    pool: Any = db.engine.pool
    database = {
        "dialect": db.engine.dialect.name,
        "pool_class": type(pool).__name__,
        "size": _call(pool, "size"),
        "checked_out": _call(pool, "checkedout"),
        "checked_in": _call(pool, "checkedin"),
        "overflow": _call(pool, "overflow"),
        "max_overflow": getattr(pool, "_max_overflow", None),
        "status": pool.status(),
    }
    redis_pool: dict[str, Any] | None = None
    if redis is not None:
        connections: Any = redis.connection_pool
        redis_pool = {
            "max_connections": getattr(connections, "max_connections", None),
            "in_use": len(getattr(connections, "_in_use_connections", ())),
            "available": len(getattr(connections, "_available_connections", ())),
        }
    return {"database": database, "redis": redis_pool}


def _call(pool: Any, name: str) -> int | None:
    method = getattr(pool, name, None)
    return int(method()) if callable(method) else None


async def queue_task(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    task: str,
    params: dict[str, Any],
) -> JobView:
    if task not in available_tasks():
        raise Unprocessable(
            f"unknown task {task!r}; available: {', '.join(sorted(available_tasks()))}"
        )
    options = task_options(task)
    if options.params is not None:
        try:
            options.params.model_validate(params)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'params'}: {error['msg']}"
                for error in exc.errors()
            )
            raise Unprocessable(f"invalid params for task {task!r}: {problems}") from exc
    # One attempt: an operator's task that failed is looked at, not repeated behind their back.
    payload = {"task": task, "params": params, "queued_by": actor_name(principal)}
    return await submit_ops_job(
        session,
        settings,
        principal,
        PROCESSING_TYPE,
        payload,
        attempts=1,
        timeout=options.timeout,
    )


async def queue_status(session: AsyncSession, settings: Settings) -> dict[str, Any]:
    query = (
        select(JobRecord.status, func.count())
        .where(JobRecord.processing_type == PROCESSING_TYPE)
        .group_by(JobRecord.status)
    )
    counts = {str(status): int(count) for status, count in (await session.execute(query)).all()}
    by_status = {
        status: counts.get(status, 0)
        for status in ("PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED")
    }
    return {
        "pending_tasks": by_status["PENDING"],
        "active_tasks": by_status["PROCESSING"],
        "by_status": by_status,
        "tasks": sorted(available_tasks()),
        "workers": {
            "backend": "saq (Redis)" if settings.redis_url else "embedded (database lease queue)",
            "in_process": settings.run_jobs_in_process,
            "concurrency": settings.jobs_workers,
        },
    }
