"""The ops module's small cache (nginx version, ...): in Redis under `<REDIS_PREFIX>:cache:`
when REDIS_URL is set, so every process shares it, else in this process with a TTL."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger("vpsapi.ops.cache")


@dataclass
class CacheCounters:
    hits: int = 0
    misses: int = 0
    sets: int = 0
    errors: int = 0


class OpsCache:
    def __init__(self, redis: Redis | None, redis_prefix: str) -> None:
        self.redis = redis
        self.key_prefix = f"{redis_prefix}:cache:"
        # SCAN patterns are globs: a prefix with glob characters must match literally.
        self.key_pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.key_prefix) + "*"
        self.counters = CacheCounters()
        self._local: dict[str, tuple[float, Any]] = {}

    async def get(self, key: str) -> Any | None:
        value = await self._get(key)
        if value is None:
            self.counters.misses += 1
        else:
            self.counters.hits += 1
        return value

    async def _get(self, key: str) -> Any | None:
        if self.redis is None:
            expires, value = self._local.get(key, (0.0, None))
            if expires < time.monotonic():
                self._local.pop(key, None)
                return None
            return value
        try:
            raw = await self.redis.get(self.key_prefix + key)
        except RedisError as exc:  # a cache outage costs speed, never the request
            self.counters.errors += 1
            log.warning("ops.cache.unavailable", error=str(exc))
            return None
        return None if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any, ttl_seconds: int) -> None:
        self.counters.sets += 1
        if self.redis is None:
            self._local[key] = (time.monotonic() + ttl_seconds, value)
            return
        try:
            await self.redis.set(self.key_prefix + key, json.dumps(value), ex=ttl_seconds)
        except RedisError as exc:
            self.counters.errors += 1
            log.warning("ops.cache.unavailable", error=str(exc))

    async def keys(self) -> list[str]:
        if self.redis is None:
            now = time.monotonic()
            return [key for key, (expires, _) in self._local.items() if expires >= now]
        return [
            raw.decode().removeprefix(self.key_prefix)
            async for raw in self.redis.scan_iter(match=self.key_pattern, count=500)
        ]

    async def clear(self) -> int:
        """Drop this cache's entries only (never other keys of the Redis database)."""
        if self.redis is None:
            removed = len(self._local)
            self._local.clear()
            return removed
        removed = 0
        batch: list[bytes] = []
        async for raw in self.redis.scan_iter(match=self.key_pattern, count=500):
            batch.append(raw)
            if len(batch) == 500:
                removed += await self.redis.unlink(*batch)
                batch = []
        if batch:
            removed += await self.redis.unlink(*batch)
        return removed
