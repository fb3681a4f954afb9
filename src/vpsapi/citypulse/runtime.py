"""What CityPulse keeps for the app's lifetime: real-time emitters, the analytics cache, the
MQTT subscriber and the retention task.

Services receive the `CityPulseRuntime` and never see HTTP or Socket.IO: they call
`emit(session, event, data, rooms)` and the event goes out only once the transaction that
produced it commits (a client told about a reading can read it back; a rolled-back request
tells nobody)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import structlog
from fastapi import Depends, Request
from sqlalchemy import event as orm_event
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.citypulse.cache import AnalyticsCache, RedisAnalyticsCache
from vpsapi.citypulse.metrics import READINGS_PURGED
from vpsapi.citypulse.service import purge_readings
from vpsapi.core.tasks import cancel_and_wait

if TYPE_CHECKING:
    from fastapi import FastAPI

log = structlog.get_logger("vpsapi.citypulse")

# (event name, payload, rooms) -> delivered to real-time clients.
Emitter = Callable[[str, dict[str, Any], list[str]], Awaitable[None]]
PostCommitAction = Callable[[], Awaitable[None]]

_PENDING = "citypulse_after_commit"


def building_room(building_id: str) -> str:
    return f"building:{building_id}"


class CityPulseRuntime:
    def __init__(self, cache: AnalyticsCache) -> None:
        self.cache = cache
        self.emitters: list[Emitter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- after-commit actions -------------------------------------------------------

    def after_commit(self, session: AsyncSession, action: PostCommitAction) -> None:
        """Run `action` once the session's transaction commits; drop it on rollback."""
        pending: list[PostCommitAction] | None = session.info.get(_PENDING)
        if pending is None:
            pending = session.info[_PENDING] = []
            sync_session = session.sync_session
            orm_event.listen(sync_session, "after_commit", self._on_commit)
            orm_event.listen(sync_session, "after_rollback", self._on_rollback)
        pending.append(action)

    def _on_commit(self, sync_session: Any) -> None:
        actions: list[PostCommitAction] = sync_session.info.get(_PENDING) or []
        sync_session.info[_PENDING] = []
        if actions:
            task = asyncio.get_running_loop().create_task(self._run(actions))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _on_rollback(self, sync_session: Any) -> None:
        sync_session.info[_PENDING] = []

    async def _run(self, actions: list[PostCommitAction]) -> None:
        for action in actions:
            try:
                await action()
            except Exception as exc:  # clients re-read the API; never fail a write for this
                log.warning("citypulse_after_commit_failed", error=str(exc))

    async def drain(self) -> None:
        """Wait for post-commit actions still running (at shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---- real-time events -----------------------------------------------------------

    def emit(
        self, session: AsyncSession, event: str, data: dict[str, Any], rooms: list[str]
    ) -> None:
        async def send() -> None:
            for emitter in self.emitters:
                await emitter(event, data, rooms)

        self.after_commit(session, send)


async def enforce_retention(app: FastAPI) -> None:
    """Delete readings past CITYPULSE_READINGS_RETENTION_DAYS now and every interval. Every
    process may run it: deleting what is already gone is a no-op."""
    settings = app.state.settings
    keep = timedelta(days=settings.citypulse_readings_retention_days)
    while True:
        purged = 0
        try:
            async with app.state.db.session() as session:
                async for count in purge_readings(session, datetime.now(UTC) - keep):
                    READINGS_PURGED.inc(count)
                    purged += count
        except Exception as exc:  # the database may be briefly away: try next round
            log.warning("citypulse_retention_failed", error=str(exc))
        if purged:
            log.info("citypulse_readings_purged", count=purged)
        await asyncio.sleep(settings.citypulse_retention_interval_seconds)


async def get_runtime(request: Request) -> CityPulseRuntime:
    runtime: CityPulseRuntime = request.app.state.citypulse
    return runtime


RuntimeDep = Annotated[CityPulseRuntime, Depends(get_runtime)]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    from vpsapi.citypulse.mqtt import MqttIngestor  # imports this module: import at use

    settings = app.state.settings
    ttl = settings.citypulse_analytics_cache_seconds
    cache = (
        RedisAnalyticsCache(ttl, app.state.redis, settings.redis_prefix)
        if app.state.redis is not None
        else AnalyticsCache(ttl)
    )
    runtime = CityPulseRuntime(cache)
    app.state.citypulse = runtime
    realtime = getattr(app.state, "citypulse_realtime", None)  # set when /ws is mounted
    if realtime is not None:
        runtime.emitters.append(realtime.emit)
    background: list[asyncio.Task[None]] = []
    # CITYPULSE_ENABLED=false (the module's `enabled_by`) turns its background work off with
    # its routes. The runtime above stays: /ws is mounted either way and answers "turned off".
    enabled = settings.citypulse_enabled
    if enabled and settings.citypulse_readings_retention_days:
        background.append(asyncio.create_task(enforce_retention(app), name="citypulse-retention"))
    if enabled and settings.mqtt_url:
        ingestor = MqttIngestor(settings, app.state.db, runtime)
        background.append(asyncio.create_task(ingestor.run(), name="citypulse-mqtt"))
    try:
        yield
    finally:
        await cancel_and_wait(*background)
        await runtime.drain()
        if realtime is not None:
            await realtime.shutdown()
