"""A cancel request's notice reaches the worker some time after the row says CANCELLED,
and can come after the job's work has ended: it cancels that job's work or nothing, never
the worker that ran it. One worker per app here, so one lost worker shows."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from job_support import submit, wait_for_status
from support import SHARED_API_KEY
from vpsapi.jobs.engine import CONTROL_CHANNEL

# The embedded server lost a worker every 2 to 50 such pairs.
PAIRS = 200


@pytest.fixture
async def one_worker(make_client: Any) -> httpx.AsyncClient:
    return await make_client(jobs_inprocess_workers=True, jobs_workers=1)


@pytest.fixture
async def headers(one_worker: httpx.AsyncClient) -> dict[str, str]:
    response = await one_worker.post("/api/auth/token", headers={"X-API-Key": SHARED_API_KEY})
    return {"Authorization": f"Bearer {response.json()['token']}"}


def worker_deaths(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if "job_worker_died" in record.getMessage()]


async def test_jobs_cancelled_as_they_run_leave_the_worker_running(
    one_worker: httpx.AsyncClient, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    for _ in range(PAIRS):
        job_id = await submit(one_worker, headers, items=1)
        cancel = await one_worker.delete(f"/api/jobs/{job_id}", headers=headers)
        assert cancel.status_code in (200, 409), cancel.text
        # A job that finished before the cancel stays finished, and one cancelled stays so.
        final = {200: "CANCELLED", 409: "COMPLETED"}[cancel.status_code]
        await wait_for_status(one_worker, headers, job_id, {final})
    job_id = await submit(one_worker, headers, items=1)
    await wait_for_status(one_worker, headers, job_id, {"COMPLETED"})
    assert worker_deaths(caplog) == []  # not even one that was replaced


async def test_a_cancel_noticed_after_the_work_ended_cancels_no_worker(
    one_worker: httpx.AsyncClient,
    headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The cancel comes while the worker is about to write the job's end, and its notice
    reaches the worker then: the job stays cancelled, and the next job runs."""
    caplog.set_level(logging.ERROR)
    engine = one_worker.app.state.jobs_engine  # type: ignore[attr-defined]
    finishing, noticed = asyncio.Event(), asyncio.Event()
    finish = engine._finish

    async def finish_once_cancelled(job_id: str, status: str, **outcome: Any) -> None:
        finishing.set()
        await noticed.wait()
        await finish(job_id, status, **outcome)

    monkeypatch.setattr(engine, "_finish", finish_once_cancelled)
    job_id = await submit(one_worker, headers, items=1)
    async with engine.events.subscribe(CONTROL_CHANNEL) as control:
        await asyncio.wait_for(finishing.wait(), 30)
        cancel = await one_worker.delete(f"/api/jobs/{job_id}", headers=headers)
        assert cancel.status_code == 200 and cancel.json()["status"] == "CANCELLED"
        assert await control.get(timeout=30) == {"cancel": job_id}
    await asyncio.sleep(0.1)  # the worker's watcher got the notice too: let it act on it
    noticed.set()
    monkeypatch.undo()
    later = await submit(one_worker, headers, items=1)
    await wait_for_status(one_worker, headers, later, {"COMPLETED"})
    # The one worker is done with the cancelled job by now, and left it cancelled.
    status = (await one_worker.get(f"/api/jobs/{job_id}", headers=headers)).json()
    assert status["status"] == "CANCELLED"
    assert worker_deaths(caplog) == []


async def test_a_worker_that_dies_is_logged_and_replaced(
    one_worker: httpx.AsyncClient,
    headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    backend: Any,
) -> None:
    if backend.scaleout:
        pytest.skip("the embedded worker loops (saq replaces its own)")
    runner = one_worker.app.state.jobs_engine.dispatcher  # type: ignore[attr-defined]
    caplog.set_level(logging.ERROR)
    runner.tasks[0].cancel()  # as a stray cancellation would
    job_id = await submit(one_worker, headers, items=1)
    await wait_for_status(one_worker, headers, job_id, {"COMPLETED"})
    [death] = worker_deaths(caplog)
    assert death.levelno == logging.ERROR
