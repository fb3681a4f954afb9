from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog

from vpsapi.core.modules import Module
from vpsapi.core.ratelimit import TierRule
from vpsapi.core.tasks import cancel_and_wait
from vpsapi.devices import cloud, service
from vpsapi.devices.app_router import push_router
from vpsapi.devices.app_router import router as app_router
from vpsapi.devices.cloud_router import router as cloud_router
from vpsapi.devices.push_providers import providers_for
from vpsapi.devices.router import REGISTER_PATH, router
from vpsapi.devices.search import DeviceSearch

log = structlog.get_logger(__name__)
CLEANUP_INTERVAL_S = 3600


async def _cleanup_loop(app: Any) -> None:
    while True:
        try:
            async with app.state.db.session() as session:
                removed = await service.delete_expired_bindings(session)
                uploads = await cloud.delete_expired_uploads(session, app.state.storage)
            expired = await _apply_clip_retention(app)
            log.info(
                "devices.cleaned",
                bindings=removed,
                unconfirmed_uploads=uploads,
                clips_past_retention=expired,
            )
        except Exception:  # keep the loop alive; the next hour retries
            log.exception("devices.cleanup_failed")
        await asyncio.sleep(CLEANUP_INTERVAL_S)


async def _apply_clip_retention(app: Any) -> int:
    """Batch after batch (each committed), so a backlog goes in one sweep."""
    days = app.state.settings.cloud_video_retention_days
    total = 0
    while days:
        async with app.state.db.session() as session:
            removed = await cloud.delete_clips_past_retention(session, app.state.storage, days)
        total += removed
        if removed < cloud.CLEANUP_BATCH:
            break
    return total


@contextlib.asynccontextmanager
async def devices_lifespan(app: Any) -> AsyncIterator[None]:
    providers = providers_for(app.state.settings)  # a missing key file stops the start here
    task = asyncio.create_task(_cleanup_loop(app))
    try:
        yield
    finally:
        await cancel_and_wait(task)
        await providers.aclose()


MODULE = Module(
    name="devices",
    description="Camera devices: seed-003 binding, VID resolution, cloud videos and push",
    routers=[router, app_router, push_router, cloud_router],
    lifespan=devices_lifespan,
    search_providers=[DeviceSearch()],
    express_validator_paths=[REGISTER_PATH],
    rate_limit_rules=[
        TierRule("/api/hello", "devices"),
        TierRule("/api/vuid", "devices"),
        TierRule("/api/auth/service-param", "devices"),
        TierRule("/api/devices", "devices"),
        TierRule("/api/cloud", "devices"),
    ],
)
