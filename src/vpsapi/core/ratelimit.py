"""Tiered rate limits with the `limits` library (memory, or Redis across processes).

Every `/api` response carries X-RateLimit-Limit/Remaining/Reset; a refused request
gets 429 with Retry-After in the body family of its path. The `auth` tier counts
failed attempts only (a 4xx answer), per client IP, so sign-in brute force is
stopped while a frontend that fetches tokens routinely is never locked out.
Other tiers count every request per user (valid access token) or per IP.
If the limit store is unreachable the request is let through and a warning logged:
an outage of Redis must not take the whole API down.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import structlog
from fastapi.responses import JSONResponse
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vpsapi.config import Settings
from vpsapi.core.context import client_ip_var
from vpsapi.core.errors import error_body
from vpsapi.core.logging import SECURITY_LOGGER
from vpsapi.core.security import TokenCodec

log = structlog.get_logger("vpsapi.ratelimit")
security_log = structlog.get_logger(SECURITY_LOGGER)

AUTH_TIER = "auth"
UNLIMITED_PREFIXES = ("/health", "/metrics")


@dataclass(frozen=True)
class TierRule:
    """Requests whose path starts with `prefix` use `tier` (longest prefix wins)."""

    prefix: str
    tier: str


def tier_limits(settings: Settings) -> dict[str, RateLimitItem]:
    return {
        "default": parse(settings.rate_limit_default),
        AUTH_TIER: parse(settings.rate_limit_auth),
        "search": parse(settings.rate_limit_search),
        "ai": parse(settings.rate_limit_ai),
        "swarm": parse(settings.rate_limit_swarm),
        "citypulse": parse(settings.rate_limit_citypulse),
        "devices": parse(settings.rate_limit_devices),
    }


def create_storage(settings: Settings) -> Storage:
    if settings.redis_url:
        return RedisStorage(
            "async+" + settings.redis_url,
            implementation="redispy",
            key_prefix=f"{settings.redis_prefix}:rl",
            socket_timeout=2,
            socket_connect_timeout=2,
        )
    return MemoryStorage()


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        codec: TokenCodec,
        storage: Storage,
        rules: list[TierRule],
    ) -> None:
        self.app = app
        self.codec = codec
        self.limits = tier_limits(settings)
        self.limiter = FixedWindowRateLimiter(storage)
        self.rules = sorted(rules, key=lambda r: len(r.prefix), reverse=True)

    def tier_for(self, path: str) -> str:
        for rule in self.rules:
            if path == rule.prefix or path.startswith(rule.prefix.rstrip("/") + "/"):
                return rule.tier
        return "default"

    def identity(self, scope: Scope, tier: str) -> str:
        ip = client_ip_var.get() or (scope.get("client") or ("unknown", 0))[0]
        if tier == AUTH_TIER:
            return f"ip:{ip}"
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and token.count(".") == 2:
                    subject = self.codec.peek_subject(token.strip())
                    if subject:
                        return f"sub:{subject}"
                break
        return f"ip:{ip}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not path.startswith("/api")
            or scope.get("method") == "OPTIONS"
        ):
            await self.app(scope, receive, send)
            return
        tier = self.tier_for(path)
        item = self.limits[tier]
        key = self.identity(scope, tier)
        try:
            if tier == AUTH_TIER:
                allowed = await self.limiter.test(item, tier, key)
            else:
                allowed = await self.limiter.hit(item, tier, key)
            stats = await self.limiter.get_window_stats(item, tier, key)
        except Exception as exc:
            log.warning("ratelimit_store_unavailable", error=str(exc))
            await self.app(scope, receive, send)
            return
        reset = math.ceil(stats.reset_time)
        headers = [
            (b"x-ratelimit-limit", str(item.amount).encode()),
            (b"x-ratelimit-remaining", str(max(0, stats.remaining)).encode()),
            (b"x-ratelimit-reset", str(reset).encode()),
        ]
        if not allowed:
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            security_log.warning(
                "rate_limit_exceeded",
                ip=client_ip_var.get() or key.removeprefix("ip:"),
                subject=key.removeprefix("sub:") if key.startswith("sub:") else None,
                method=scope.get("method"),
                path=path,
                tier=tier,
            )
            body = error_body(
                path,
                scope.get("method", "GET"),
                429,
                "TooManyRequests",
                "Too many requests, please try again later",
                legacy_body={"error": "Too many requests", "retryAfter": retry_after},
            )
            response = JSONResponse(
                body,
                status_code=429,
                headers={"Retry-After": str(retry_after)},
            )
            response.raw_headers.extend(headers)
            await response(scope, receive, send)
            return

        status_holder: dict[str, int] = {}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)
        if tier == AUTH_TIER and 400 <= status_holder.get("status", 200) < 500:
            try:
                await self.limiter.hit(item, tier, key)
            except Exception as exc:
                log.warning("ratelimit_store_unavailable", error=str(exc))
