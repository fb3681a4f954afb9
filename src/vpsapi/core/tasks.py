"""Stopping background tasks, work whose caller may go away, and work on a schedule."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import structlog

log = structlog.get_logger("vpsapi.tasks")

# How long a cancelled task gets before it is cancelled again.
RECANCEL_SECONDS = 0.1
# A scheduled task's first run comes soon after start (a restarted service catches up),
# not at once.
FIRST_RUN_DELAY = 60.0


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel `tasks` and return once every one has ended.

    One cancellation is not always enough: a library can lose it (Python 3.11's
    `asyncio.wait_for`, which redis-py's connect goes through, drops a cancellation that
    arrives as the awaited call completes), and the task then carries on to its next
    sleep: a monitoring sampler's 10 s held every shutdown that long. A task still running
    after a moment is cancelled again. What a task raised instead of ending is logged."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_SECONDS)
    for task in tasks:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.warning("task_failed_on_stop", task=task.get_name(), error=repr(error))


@asynccontextmanager
async def cancelled_when(event: Callable[[], Awaitable[object]]) -> AsyncIterator[None]:
    """Run the block, cancelled as soon as `event()` returns (a client leaving, say). The
    cancellation ends with the block: what follows runs, and finds out from what the block
    did not get done."""
    watcher: asyncio.Task[None] | None = None
    try:
        with anyio.CancelScope() as scope:

            async def watch() -> None:
                await event()
                scope.cancel()

            watcher = asyncio.create_task(watch())
            yield
    finally:
        if watcher is not None:  # outside the scope: a cancelled one would cut this short
            await cancel_and_wait(watcher)


@asynccontextmanager
async def periodic(
    name: str, interval: float, body: Callable[[], Awaitable[Any]]
) -> AsyncIterator[None]:
    """Run `body()` every `interval` seconds for the lifetime of the block (a module's
    lifespan: renewals, retention)."""

    async def loop() -> None:
        await asyncio.sleep(min(FIRST_RUN_DELAY, interval))
        while True:
            try:
                await body()
            except Exception as exc:  # one failed run must not end the schedule
                log.error("schedule.failed", task=name, error=str(exc))
            await asyncio.sleep(interval)

    task = asyncio.create_task(loop(), name=name)
    try:
        yield
    finally:
        await cancel_and_wait(task)
