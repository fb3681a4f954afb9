"""Jobs over HTTP for tests that run real processes (importable as `jobs_support`): a token
from the shared API key, type1 submissions, and waits that poll the list once per round
(well inside any rate limit)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from support import SHARED_API_KEY

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


def shared_key_headers(client: httpx.Client) -> dict[str, str]:
    response = client.post("/api/auth/token", headers={"X-API-Key": SHARED_API_KEY})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def post_type1_job(
    client: httpx.Client, headers: dict[str, str], items: int, delay_ms: int
) -> httpx.Response:
    return client.post(
        "/api/jobs",
        json={
            "processingType": "type1",
            "data": [{"i": i} for i in range(items)],
            "options": {"delayMs": delay_ms},
        },
        headers=headers,
    )


def submit_type1_job(
    client: httpx.Client, headers: dict[str, str], items: int, delay_ms: int
) -> str:
    response = post_type1_job(client, headers, items, delay_ms)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["jobId"]
    return job_id


def wait_until_running(client: httpx.Client, headers: dict[str, str]) -> None:
    """Until some job has reported progress: a kill then lands inside a running job."""
    for _ in range(600):
        response = client.get("/api/jobs?status=PROCESSING", headers=headers)
        if any(job["progress"] > 0 for job in response.json()["jobs"]):
            return
        time.sleep(0.05)
    raise AssertionError("no job started")


def wait_all_finished(
    client: httpx.Client, headers: dict[str, str], ids: list[str], rounds: int = 1200
) -> list[dict[str, Any]]:
    """The jobs in `ids` (in that order) once every one has ended, or as they are when
    the rounds run out."""
    wanted = set(ids)
    found: dict[str, dict[str, Any]] = {}
    for _ in range(rounds):
        response = client.get("/api/jobs?limit=200", headers=headers)  # the newest: ours
        assert response.status_code == 200, response.text
        found = {job["jobId"]: job for job in response.json()["jobs"] if job["jobId"] in wanted}
        if len(found) == len(wanted) and all(job["status"] in TERMINAL for job in found.values()):
            break
        time.sleep(0.5)
    return [found[job_id] for job_id in ids if job_id in found]
