"""The Redis connection pool used for pub/sub, rate limits and the job queue."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff


def create_redis(url: str) -> Redis:
    # Short timeouts: when Redis is down, callers get an error within seconds
    # (and answer 503), never a hang.
    return Redis.from_url(
        url,
        socket_timeout=3,
        socket_connect_timeout=3,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=2),
        decode_responses=False,
    )
