"""Active health checks of the backends the managed nginx proxies to.

Results are kept per process and, with Redis, shared in one hash so every process
answers `/api/health/backends` with the latest check whichever process made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog

from vpsapi.core.http import outbound_client
from vpsapi.core.tasks import cancel_and_wait
from vpsapi.ops.nginx import service
from vpsapi.ops.nginx.schemas import BackendHealth

log = structlog.get_logger(__name__)
CHECK_TIMEOUT_S = 5.0
MAX_PARALLEL_CHECKS = 16


class BackendHealthRegistry:
    def __init__(self, redis: Any, prefix: str) -> None:
        self._redis = redis
        self._key = f"{prefix}:ops:backend-health"
        self._local: dict[str, BackendHealth] = {}

    async def check(self, url: str) -> BackendHealth:
        started = time.perf_counter()
        try:
            async with outbound_client(timeout=CHECK_TIMEOUT_S, follow_redirects=False) as http:
                response = await http.get(url)
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
            # Not only the backend's failures: a site stored before the address rules
            # tightened may name a host no client can ask (`999.1.1.1`, `xn--zz`).
            result = BackendHealth(
                backend=url,
                healthy=False,
                error=str(exc) or type(exc).__name__,
                checked_at=datetime.now(UTC),
            )
        else:
            result = BackendHealth(
                backend=url,
                healthy=response.status_code < 400,
                status_code=response.status_code,
                latency_ms=round((time.perf_counter() - started) * 1000, 2),
                error=None if response.status_code < 400 else f"HTTP {response.status_code}",
                checked_at=datetime.now(UTC),
            )
        await self._store(result)
        return result

    async def _store(self, result: BackendHealth) -> None:
        self._local[result.backend] = result
        if self._redis is not None:
            with contextlib.suppress(Exception):  # the local copy still answers
                await self._redis.hset(self._key, result.backend, result.model_dump_json())

    async def all(self) -> dict[str, BackendHealth]:
        results = dict(self._local)
        if self._redis is not None:
            with contextlib.suppress(Exception):
                stored = await self._redis.hgetall(self._key)
                for raw in stored.values():
                    item = BackendHealth.model_validate(json.loads(raw))
                    known = results.get(item.backend)
                    if known is None or known.checked_at < item.checked_at:
                        results[item.backend] = item
        return results

    async def check_all(self, urls: list[str]) -> list[BackendHealth]:
        limit = asyncio.Semaphore(MAX_PARALLEL_CHECKS)

        async def bounded(url: str) -> BackendHealth:
            async with limit:
                return await self.check(url)

        return list(await asyncio.gather(*(bounded(url) for url in urls)))


async def _check_loop(app: Any, registry: BackendHealthRegistry) -> None:
    interval = app.state.settings.backend_check_interval
    while True:
        await asyncio.sleep(interval)
        try:
            async with app.state.db.session() as session:
                backends = await service.known_backends(session)
            urls = [url for url, usage in backends.items() if usage.get("health_check")]
            await registry.check_all(urls)
        except Exception:  # keep checking; the next round retries
            log.exception("ops.backend_checks_failed")


@contextlib.asynccontextmanager
async def backend_checks(app: Any) -> AsyncIterator[None]:
    registry = BackendHealthRegistry(app.state.redis, app.state.settings.redis_prefix)
    app.state.backend_health = registry
    task = asyncio.create_task(_check_loop(app, registry))
    try:
        yield
    finally:
        await cancel_and_wait(task)
