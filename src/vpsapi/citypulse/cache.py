"""Analytics results cached for a TTL (5 min by default), dropped when a building gets data.

Invalidation bumps a generation number per building (and a global one for cross-building
answers); cache keys include the generations they were computed under, so a bump makes
every older entry unreachable at once, on every process when Redis holds them."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from redis.asyncio import Redis

from vpsapi.citypulse.metrics import ANALYTICS_CACHE

ALL_BUILDINGS = "*"


def _digest(params: dict[str, Any]) -> str:
    raw = json.dumps(params, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


class AnalyticsCache:
    """In-process cache, the embedded default."""

    def __init__(self, ttl_seconds: int) -> None:
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[float, Any]] = {}
        self._generations: dict[str, int] = {}

    async def _generation(self, building_id: str) -> str:
        return f"{self._generations.get(building_id, 0)}.{self._generations.get(ALL_BUILDINGS, 0)}"

    async def _read(self, key: str) -> Any | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    async def _write(self, key: str, value: Any) -> None:
        now = time.monotonic()
        if len(self._entries) > 10_000:  # bound memory: drop what has expired
            self._entries = {k: e for k, e in self._entries.items() if e[0] >= now}
        self._entries[key] = (now + self.ttl, value)

    async def invalidate(self, building_id: str) -> None:
        for scope in (building_id, ALL_BUILDINGS):
            self._generations[scope] = self._generations.get(scope, 0) + 1

    async def get(self, scope: str, name: str, params: dict[str, Any]) -> Any | None:
        """Cached JSON value of analysis `name` over `scope` (a building id or ALL_BUILDINGS)."""
        if self.ttl <= 0:
            return None
        value = await self._read(await self._key(scope, name, params))
        ANALYTICS_CACHE.labels(result="miss" if value is None else "hit").inc()
        return value

    async def put(self, scope: str, name: str, params: dict[str, Any], value: Any) -> None:
        if self.ttl > 0:
            await self._write(await self._key(scope, name, params), value)

    async def _key(self, scope: str, name: str, params: dict[str, Any]) -> str:
        return f"{name}:{scope}:{await self._generation(scope)}:{_digest(params)}"


class RedisAnalyticsCache(AnalyticsCache):
    """Shared by every process: entries expire in Redis, generations are Redis counters."""

    def __init__(self, ttl_seconds: int, redis: Redis, prefix: str) -> None:
        super().__init__(ttl_seconds)
        self.redis = redis
        self.prefix = f"{prefix}:citypulse:analytics:"

    async def _generation(self, building_id: str) -> str:
        own, everyone = await self.redis.mget(
            self.prefix + "gen:" + building_id, self.prefix + "gen:" + ALL_BUILDINGS
        )
        return f"{int(own or 0)}.{int(everyone or 0)}"

    async def _read(self, key: str) -> Any | None:
        raw = await self.redis.get(self.prefix + key)
        return None if raw is None else json.loads(raw)

    async def _write(self, key: str, value: Any) -> None:
        await self.redis.set(self.prefix + key, json.dumps(value, default=str), ex=self.ttl)

    async def invalidate(self, building_id: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for scope in (building_id, ALL_BUILDINGS):
                # Generations outlive any entry computed under them (TTL + a day).
                pipe.incr(self.prefix + "gen:" + scope)
                pipe.expire(self.prefix + "gen:" + scope, self.ttl + 86_400)
            await pipe.execute()
