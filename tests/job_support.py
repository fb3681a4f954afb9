"""Helpers for job tests: submit, follow the SSE stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx


async def wait_for_job(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    job_id: str,
    reached: Callable[[dict[str, Any]], bool],
    what: str,
) -> dict[str, Any]:
    """Poll the job until `reached(job)` (bounded; not a timing assertion).

    httpx's in-process transport buffers whole responses, so live SSE streams are
    tested against real server processes instead."""
    last: dict[str, Any] = {}
    for _ in range(3000):
        response = await client.get(f"/api/jobs/{job_id}", headers=headers)
        last = response.json()
        if reached(last):
            return last
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} never reached {what}; last {last}")


async def wait_for_status(
    client: httpx.AsyncClient, headers: dict[str, str], job_id: str, statuses: set[str]
) -> dict[str, Any]:
    return await wait_for_job(
        client, headers, job_id, lambda job: job.get("status") in statuses, str(statuses)
    )


async def wait_for_progress(
    client: httpx.AsyncClient, headers: dict[str, str], job_id: str, progress: int
) -> dict[str, Any]:
    return await wait_for_job(
        client, headers, job_id, lambda job: job.get("progress") == progress, f"{progress} %"
    )


async def submit(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    processing_type: str = "type1",
    items: int = 2,
    **options: Any,
) -> str:
    response = await client.post(
        "/api/jobs",
        json={
            "processingType": processing_type,
            "data": [{"id": i} for i in range(items)],
            "options": options,
        },
        headers=headers,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["jobId"])


async def sse_events(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[str, str, str]]:
    """(event, id, data) triples of an SSE response until it ends."""
    async with client.stream("GET", url, headers=headers or {}, timeout=60) as response:
        assert response.status_code == 200
        event, event_id, data = "message", "", ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif line == "" and data:
                yield event, event_id, data
                event, event_id, data = "message", "", ""
