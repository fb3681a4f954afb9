"""Real processes: a worker or server killed with SIGKILL loses no job; a job
submitted through one server streams live through another."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from support import SHARED_API_KEY, server_env, start_process

pytestmark = pytest.mark.multiprocess

JOB_COUNT = 12
FAST_RECOVERY = {"JOB_LEASE_SECONDS": "2", "JOBS_WORKERS": "4"}


def _token(base_url: str) -> dict[str, str]:
    response = httpx.post(base_url + "/api/auth/token", headers={"X-API-Key": SHARED_API_KEY})
    return {"Authorization": f"Bearer {response.json()['token']}"}


def _submit_slow_jobs(base_url: str, headers: dict[str, str]) -> list[str]:
    ids = []
    for _ in range(JOB_COUNT):
        response = httpx.post(
            base_url + "/api/jobs",
            json={
                "processingType": "type1",
                "data": [{"i": i} for i in range(5)],
                # Long enough per step that the kill lands inside a running job even
                # on a loaded machine.
                "options": {"delayMs": 400},
            },
            headers=headers,
        )
        assert response.status_code == 202
        ids.append(response.json()["jobId"])
    return ids


def _wait_until_processing(base_url: str, headers: dict[str, str]) -> None:
    for _ in range(600):
        jobs = httpx.get(base_url + "/api/jobs?status=PROCESSING", headers=headers).json()["jobs"]
        if any(job["progress"] > 0 for job in jobs):
            return
        time.sleep(0.05)
    raise AssertionError("no job started")


def _wait_all_completed(base_url: str, headers: dict[str, str], ids: list[str]) -> list[dict]:
    jobs: list[dict] = []
    for _ in range(1200):
        jobs = [httpx.get(f"{base_url}/api/jobs/{i}", headers=headers).json() for i in ids]
        if all(job["status"] in ("COMPLETED", "FAILED", "CANCELLED") for job in jobs):
            return jobs
        time.sleep(0.1)
    return jobs


def test_worker_killed_mid_run_loses_nothing(
    settings_factory, server_factory, backend, tmp_path: Path
) -> None:
    if not backend.scaleout:
        pytest.skip("separate `vpsapi worker` processes need Redis (scale-out run)")
    settings = settings_factory()
    server = server_factory(settings, JOBS_INPROCESS_WORKERS="false", **FAST_RECOVERY)
    headers = _token(server.base_url)
    env = server_env(settings, **FAST_RECOVERY)
    first = start_process(["worker"], env, tmp_path / "worker1.log")
    try:
        ids = _submit_slow_jobs(server.base_url, headers)
        _wait_until_processing(server.base_url, headers)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = start_process(["worker"], env, tmp_path / "worker2.log")
        try:
            jobs = _wait_all_completed(server.base_url, headers, ids)
        finally:
            second.terminate()
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    assert [job["status"] for job in jobs] == ["COMPLETED"] * JOB_COUNT
    assert any(job["attempts"] >= 2 for job in jobs), "some job was taken again after the kill"


def test_server_killed_mid_run_resumes_after_restart(
    settings_factory, server_factory, backend
) -> None:
    if backend.scaleout:
        pytest.skip("embedded default: workers live inside the server process")
    settings = settings_factory()
    server = server_factory(settings, **FAST_RECOVERY)
    headers = _token(server.base_url)
    ids = _submit_slow_jobs(server.base_url, headers)
    _wait_until_processing(server.base_url, headers)
    server.stop(signal.SIGKILL)
    restarted = server_factory(settings, **FAST_RECOVERY)
    headers = _token(restarted.base_url)
    jobs = _wait_all_completed(restarted.base_url, headers, ids)
    assert [job["status"] for job in jobs] == ["COMPLETED"] * JOB_COUNT


def test_job_streams_live_through_another_server(settings_factory, server_factory, backend) -> None:
    if not backend.scaleout:
        pytest.skip("two server processes share events through Redis (scale-out run)")
    settings = settings_factory()
    submit_server = server_factory(settings, JOBS_INPROCESS_WORKERS="true")
    stream_server = server_factory(settings, JOBS_INPROCESS_WORKERS="false")
    headers = _token(submit_server.base_url)
    response = httpx.post(
        submit_server.base_url + "/api/jobs",
        json={
            "processingType": "type2",
            "data": [{"i": i} for i in range(10)],
            "options": {"delayMs": 150},
        },
        headers=headers,
    )
    job_id = response.json()["jobId"]
    token = headers["Authorization"].split()[1]
    seen: list[dict] = []
    with httpx.stream(
        "GET",
        f"{stream_server.base_url}/api/sse/job-progress/{job_id}?access_token={token}",
        timeout=60,
    ) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                payload = json.loads(line[5:])
                if "status" in payload:
                    seen.append(payload)
    assert seen[-1]["status"] == "COMPLETED"
    live = [
        event for event in seen if event["status"] == "PROCESSING" and 0 < event["progress"] < 100
    ]
    assert len(live) >= 2, "progress arrived while the job ran, not only at the end"
