"""Application factory: settings in, a ready ASGI app out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from vpsapi import __version__
from vpsapi.auth.bootstrap import prepare_database
from vpsapi.auth.module import MODULE as AUTH
from vpsapi.citypulse.ai.module import MODULE as AI
from vpsapi.citypulse.module import MODULE as CITYPULSE
from vpsapi.config import Settings, get_settings
from vpsapi.console.module import MODULE as CONSOLE
from vpsapi.core.db import Database
from vpsapi.core.errors import (
    install_error_handlers,
    register_express_validator,
    register_fastapi_style,
)
from vpsapi.core.etag import COMPRESSED_FROM_BYTES, ETagMiddleware
from vpsapi.core.events import EventBus, RedisEventBus
from vpsapi.core.logging import configure_logging, init_sentry
from vpsapi.core.memory import freeze_long_lived_objects
from vpsapi.core.metrics import ResponseTimes
from vpsapi.core.middleware import (
    NegotiatedGZip,
    OriginGuard,
    RequestMiddleware,
    TrailingSlash,
)
from vpsapi.core.modules import Module
from vpsapi.core.openapi import install_openapi
from vpsapi.core.ratelimit import KeyOwners, RateLimitMiddleware, create_storage
from vpsapi.core.redis import create_redis
from vpsapi.core.security import TokenCodec
from vpsapi.devices.module import MODULE as DEVICES
from vpsapi.health.module import MODULE as HEALTH
from vpsapi.info.module import MODULE as INFO
from vpsapi.jobs.module import MODULE as JOBS
from vpsapi.objects.module import MODULE as OBJECTS
from vpsapi.ops.module import MODULE as OPS

log = structlog.get_logger("vpsapi.app")

MODULES: list[Module] = [HEALTH, AUTH, INFO, OBJECTS, JOBS, OPS, DEVICES, CITYPULSE, AI, CONSOLE]


# A part that cannot stop (a stuck task, a server that does not answer) must not keep
# the process from exiting: each shutdown step gets this long, then the next one runs.
SHUTDOWN_STEP_SECONDS = 10


async def _bounded(step: str, stop: Callable[[], Awaitable[Any]]) -> None:
    try:
        async with asyncio.timeout(SHUTDOWN_STEP_SECONDS):
            await stop()
    except TimeoutError:
        log.error("shutdown_step_timeout", step=step)


@asynccontextmanager
async def bounded_shutdown(module: Module, app: FastAPI) -> AsyncIterator[None]:
    assert module.lifespan is not None
    context = module.lifespan(app)
    await context.__aenter__()
    try:
        yield
    finally:
        await _bounded(f"module {module.name}", lambda: context.__aexit__(None, None, None))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    db = Database(settings)
    app.state.db = db
    async with AsyncExitStack() as stack:
        stack.push_async_callback(_bounded, "database", db.dispose)
        await prepare_database(db, settings)
        await db.warn_if_autovacuum_off()
        if settings.redis_url:
            redis = create_redis(settings.redis_url)
            stack.push_async_callback(_bounded, "redis", redis.aclose)
            app.state.redis = redis
            app.state.events = RedisEventBus(redis, settings.redis_prefix)
        else:
            app.state.redis = None
            app.state.events = EventBus()
        await app.state.events.start()
        stack.push_async_callback(_bounded, "event bus", app.state.events.close)
        for module in app.state.modules:
            if module.lifespan is not None:
                await stack.enter_async_context(bounded_shutdown(module, app))
        if getattr(app.state, "freeze_after_startup", False):
            freeze_long_lived_objects()
        log.info(
            "started",
            version=__version__,
            environment=settings.environment,
            database="sqlite" if settings.is_sqlite else "postgresql",
            redis=bool(settings.redis_url),
        )
        yield
        log.info("stopping")


def create_server_app() -> FastAPI:
    """`vpsapi serve`'s app: `create_app`'s, with what it built frozen once it started
    (see `freeze_long_lived_objects`; apps made in tests are thrown away, so not theirs)."""
    app = create_app()
    app.state.freeze_after_startup = True
    return app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)
    init_sentry(settings)
    codec = TokenCodec(
        settings.jwt_signing_key(),
        settings.jwt_issuer,
        settings.jwt_expires_in,
        settings.jwt_refresh_expires_in,
    )
    app = FastAPI(
        title="vpsapi",
        version=__version__,
        description=(
            "Job processing with live progress, VPS management, camera devices and "
            "smart-building APIs in one service. `/api/v1` answers use the "
            "`{success, data}` envelope; seed-000/003 paths keep their documented bodies."
        ),
        lifespan=lifespan,
        telemetry={
            "tracing": settings.otel_enabled,
            "metrics": settings.otel_enabled,
            "logs": settings.otel_enabled,
        },
        swagger_ui_parameters={"persistAuthorization": True},
    )
    app.state.settings = settings
    app.state.codec = codec
    # Who holds which API key: filled by authentication, read by the limiter (if any).
    app.state.key_owners = KeyOwners() if settings.rate_limit_enabled else None
    app.state.response_times = ResponseTimes()  # kept by RequestMiddleware, for readiness
    app.state.started_at = time.monotonic()
    app.state.modules = MODULES
    install_error_handlers(app)
    install_openapi(app)
    register_fastapi_style([p for module in MODULES for p in module.fastapi_error_prefixes])
    register_express_validator([p for module in MODULES for p in module.express_validator_paths])
    for module in MODULES:
        for router in module.routers:
            app.include_router(router)
    for module in MODULES:
        for path, factory in module.mounts:
            app.mount(path, factory(app))

    # Innermost first: tags name the uncompressed content, 304s carry the limit headers.
    app.add_middleware(ETagMiddleware)
    if settings.rate_limit_enabled:
        app.add_middleware(
            RateLimitMiddleware,
            settings=settings,
            codec=codec,
            storage=create_storage(settings),
            rules=[rule for module in MODULES for rule in module.rate_limit_rules],
            key_owners=app.state.key_owners,
        )
    app.add_middleware(  # seed 004's level
        NegotiatedGZip, minimum_size=COMPRESSED_FROM_BYTES, compresslevel=6
    )
    app.add_middleware(OriginGuard, allowed_origins=settings.allowed_origins)
    app.add_middleware(
        RequestMiddleware,
        max_body_size=settings.max_body_size,
        response_times=app.state.response_times,
    )
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    # One slash too many is answered as the path without it; one too few still redirects
    # (`/console` to the console's `/console/`), as Express's static files do.
    app.add_middleware(TrailingSlash, router=app.router)
    return app
