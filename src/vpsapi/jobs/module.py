from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import FastAPI

from vpsapi.config import Settings
from vpsapi.core.db import Database
from vpsapi.core.events import EventBus
from vpsapi.core.modules import Module
from vpsapi.core.tasks import cancel_and_wait
from vpsapi.jobs import service
from vpsapi.jobs.engine import JobEngine
from vpsapi.jobs.processors import load_entry_points
from vpsapi.jobs.router import router, v1_router
from vpsapi.jobs.runtime import (
    LocalRunner,
    SaqDispatcher,
    retention_cutoff,
    saq_queue,
    saq_worker,
    sweep,
)

log = structlog.get_logger("vpsapi.jobs")

RETENTION_INTERVAL = 3600.0


@dataclass
class JobRuntime:
    """The engine plus whatever runs jobs in this process; `stop()` undoes `start`."""

    engine: JobEngine
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    closers: list[Any] = field(default_factory=list)

    async def stop(self) -> None:
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                await close()
        await cancel_and_wait(*self.tasks)


async def _purge_loop(engine: JobEngine) -> None:
    while True:
        try:
            async with engine.db.session() as session:
                removed = await service.purge_finished(session, retention_cutoff(engine.settings))
            if removed:
                log.info("jobs_purged", count=removed)
        except Exception as exc:
            log.warning("jobs_purge_failed", error=str(exc))
        await asyncio.sleep(RETENTION_INTERVAL)


async def start_runtime(
    db: Database, events: EventBus, settings: Settings, *, run_workers: bool, own_signals: bool
) -> JobRuntime:
    """Wire the engine to a dispatcher, and start workers when `run_workers`."""
    load_entry_points()
    engine = JobEngine(db, events, settings)
    runtime = JobRuntime(engine)
    if settings.redis_url:
        queue = saq_queue(settings)
        await queue.connect()
        runtime.closers.append(queue.disconnect)
        dispatcher = SaqDispatcher(queue, settings)
        engine.dispatcher = dispatcher
        if run_workers:
            worker = saq_worker(queue, engine, settings.jobs_workers, own_signals=own_signals)
            runtime.tasks.append(asyncio.create_task(worker.start(), name="saq-worker"))
            runtime.closers.append(worker.stop)
            runtime.tasks.append(asyncio.create_task(sweep(engine, dispatcher), name="job-sweeper"))
    elif run_workers:
        runner = LocalRunner(engine, settings.jobs_workers)
        engine.dispatcher = runner
        await runner.start()
        runtime.closers.append(runner.stop)
    if run_workers:
        runtime.tasks.append(asyncio.create_task(engine.watch_control(), name="job-control"))
        runtime.tasks.append(asyncio.create_task(_purge_loop(engine), name="job-retention"))
    return runtime


@asynccontextmanager
async def jobs_lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    runtime = await start_runtime(
        app.state.db,
        app.state.events,
        settings,
        run_workers=settings.run_jobs_in_process,
        own_signals=False,
    )
    app.state.jobs_engine = runtime.engine
    try:
        yield
    finally:
        await runtime.stop()


MODULE = Module(
    name="jobs",
    description="Data-processing jobs with retries and live progress over SSE",
    routers=[router, v1_router],
    lifespan=jobs_lifespan,
    search_providers=[service.JobSearch()],
)
