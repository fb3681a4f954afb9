"""Run a coroutine on a schedule for the lifetime of the app (daily renewals, retention)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog

from vpsapi.core.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

# The first run comes soon after start (a restarted service catches up), not at once.
FIRST_RUN_DELAY = 60.0


@contextlib.asynccontextmanager
async def periodic(
    name: str, interval: float, body: Callable[[], Awaitable[Any]]
) -> AsyncIterator[None]:
    async def loop() -> None:
        await asyncio.sleep(min(FIRST_RUN_DELAY, interval))
        while True:
            try:
                await body()
            except Exception as exc:  # one failed run must not end the schedule
                log.error("ops.schedule.failed", task=name, error=str(exc))
            await asyncio.sleep(interval)

    task = asyncio.create_task(loop(), name=name)
    try:
        yield
    finally:
        await cancel_and_wait(task)
