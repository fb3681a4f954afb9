"""Stopping the app while its workers run a job: the job is handed back, not lost, waits
again, counts no attempt, and idle workers do not hold the stop up."""

from __future__ import annotations

import asyncio

import httpx

from job_support import submit, wait_for_status
from support import SHARED_API_KEY

# Far longer than the test: only a hand-back, not an expired lease, lets the job run again.
LONG_LEASE = {"job_lease_seconds": 3600}


async def _headers(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.post("/api/auth/token", headers={"X-API-Key": SHARED_API_KEY})
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def test_a_job_running_at_shutdown_is_handed_back_and_finishes_after_restart(
    make_client, test_processors
) -> None:
    gate = test_processors["gate"]
    first = await make_client(jobs_inprocess_workers=True, **LONG_LEASE)
    headers = await _headers(first)
    job_id = await submit(first, headers, "test-gate")
    await asyncio.wait_for(gate.started.wait(), 30)
    other_id = await submit(first, headers, "type1")  # keeps the other workers busy, then idle
    await wait_for_status(first, headers, other_id, {"COMPLETED"})

    await first.stop_app()

    # Handed back, it waits again: no run shows as under way while none is.
    reader = await make_client(jobs_inprocess_workers=False, **LONG_LEASE)
    waiting = (await reader.get(f"/api/jobs/{job_id}", headers=headers)).json()
    assert (waiting["status"], waiting["progress"], waiting["attempts"]) == ("PENDING", 0, 0)
    assert "startedAt" not in waiting  # as a job no worker has started
    await reader.stop_app()

    gate.release.set()
    second = await make_client(jobs_inprocess_workers=True, **LONG_LEASE)
    job = await wait_for_status(second, headers, job_id, {"COMPLETED", "FAILED"})
    assert job["status"] == "COMPLETED"
    assert job["result"] == {"released": True}
    assert job["attempts"] == 1  # the interrupted run was given back, not counted
