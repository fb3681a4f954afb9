"""Retries with backoff, exhaustion, timeouts, and the status while a retry waits."""

from __future__ import annotations

import httpx

from job_support import submit, wait_for_status


async def test_retry_then_success(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], test_processors
) -> None:
    job_id = await submit(jobs_client, token_headers, "test-flaky")
    job = await wait_for_status(jobs_client, token_headers, job_id, {"COMPLETED", "FAILED"})
    assert job["status"] == "COMPLETED"
    assert job["attempts"] == 3
    assert job["result"] == {"ok": True, "calls": 3}
    assert "error" not in job and "lastError" not in job


async def test_retry_exhaustion_fails_with_last_error(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], test_processors
) -> None:
    test_processors["flaky"].failures = 99
    job_id = await submit(jobs_client, token_headers, "test-flaky", attempts=2)
    job = await wait_for_status(jobs_client, token_headers, job_id, {"COMPLETED", "FAILED"})
    assert job["status"] == "FAILED"
    assert job["attempts"] == 2 and job["maxAttempts"] == 2
    assert job["error"] == "boom 2"
    assert job["failedAt"].endswith("Z") and "processingTime" not in job  # seed 000's hash


async def test_waiting_retry_stays_processing(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], test_processors
) -> None:
    test_processors["flaky"].failures = 1
    job_id = await submit(jobs_client, token_headers, "test-flaky", retryDelayMs=60_000)
    job = await wait_for_status(jobs_client, token_headers, job_id, {"PROCESSING"})
    for _ in range(200):
        job = (await jobs_client.get(f"/api/jobs/{job_id}", headers=token_headers)).json()
        if "nextAttemptAt" in job:
            break
    assert job["status"] == "PROCESSING"
    assert job["lastError"] == "boom 1"
    assert job["attempts"] == 1
    assert "nextAttemptAt" in job
    cancelled = await jobs_client.delete(f"/api/jobs/{job_id}", headers=token_headers)
    assert cancelled.json()["status"] == "CANCELLED"


async def test_timeout_fails_the_job(
    jobs_client: httpx.AsyncClient, token_headers: dict[str, str], test_processors
) -> None:
    job_id = await submit(jobs_client, token_headers, "test-sleepy", attempts=1)
    job = await wait_for_status(jobs_client, token_headers, job_id, {"COMPLETED", "FAILED"})
    assert job["status"] == "FAILED"
    assert job["error"] == "Job timed out after 1s"
