"""Stopping background tasks whose cancellation a library lost."""

from __future__ import annotations

import asyncio

from vpsapi.core.tasks import cancel_and_wait


async def _loses_one_cancellation(cancellations_seen: list[int]) -> None:
    # As a library that turns a cancellation into an error does, once; then a long sleep.
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        cancellations_seen.append(1)
    await asyncio.sleep(3600)


async def test_a_task_that_lost_its_cancellation_is_cancelled_again() -> None:
    seen: list[int] = []
    task = asyncio.create_task(_loses_one_cancellation(seen))
    await asyncio.sleep(0)  # let it start
    # Bounded so that a regression fails instead of hanging the run.
    await asyncio.wait_for(cancel_and_wait(task), timeout=30)
    assert task.cancelled()
    assert seen == [1]


async def test_a_task_that_failed_is_reported_not_raised() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(task)  # returns; the error is logged
    assert isinstance(task.exception(), RuntimeError)
