"""Real processes: a worker or server killed with SIGKILL loses no job; a job
submitted through one server streams live through another."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import httpx
import pytest
from saq import Queue, Status
from saq import utils as saq_time

from jobs_support import (
    shared_key_headers,
    submit_type1_job,
    wait_all_finished,
    wait_until_running,
)
from support import server_env, start_process
from vpsapi.jobs.runtime import SWEEP_INTERVAL, saq_queue

pytestmark = pytest.mark.multiprocess

JOB_COUNT = 12
FAST_RECOVERY = {"JOB_LEASE_SECONDS": "2", "JOBS_WORKERS": "4"}


def _submit_slow_jobs(client: httpx.Client, headers: dict[str, str]) -> list[str]:
    # Long enough per step that the kill lands inside a running job even on a loaded machine.
    return [submit_type1_job(client, headers, items=5, delay_ms=400) for _ in range(JOB_COUNT)]


def test_worker_killed_mid_run_loses_nothing(
    settings_factory, server_factory, backend, tmp_path: Path
) -> None:
    if not backend.scaleout:
        pytest.skip("separate `vpsapi worker` processes need Redis (scale-out run)")
    settings = settings_factory()
    server = server_factory(settings, JOBS_INPROCESS_WORKERS="false", **FAST_RECOVERY)
    client = httpx.Client(base_url=server.base_url, timeout=30)
    headers = shared_key_headers(client)
    env = server_env(settings, **FAST_RECOVERY)
    first = start_process(["worker"], env, tmp_path / "worker1.log")
    try:
        ids = _submit_slow_jobs(client, headers)
        wait_until_running(client, headers)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = start_process(["worker"], env, tmp_path / "worker2.log")
        try:
            jobs = wait_all_finished(client, headers, ids)
        finally:
            second.terminate()
            second.wait(30)
    finally:
        client.close()
        if first.poll() is None:
            first.kill()
    assert [job["status"] for job in jobs] == ["COMPLETED"] * JOB_COUNT
    assert any(job["attempts"] >= 2 for job in jobs), "some job was taken again after the kill"


def test_worker_killed_between_taking_and_claiming_a_job_loses_nothing(
    settings_factory, server_factory, backend, tmp_path: Path
) -> None:
    """kill -9 can land after a worker took saq's job and before it claimed the row: the
    row stays pending while saq shows the job active. Such a job is queued again within
    a lease or two, not after saq's own timeout (the job timeout plus a minute)."""
    if not backend.scaleout:
        pytest.skip("saq on Redis only (scale-out run)")
    settings = settings_factory()
    server = server_factory(settings, JOBS_INPROCESS_WORKERS="false", **FAST_RECOVERY)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        headers = shared_key_headers(client)
        job_id = submit_type1_job(client, headers, items=2, delay_ms=10)
        asyncio.run(_take_and_die(saq_queue(settings)))
        worker = start_process(
            ["worker"], server_env(settings, **FAST_RECOVERY), tmp_path / "w.log"
        )
        try:
            # 240 rounds of 0.5 s: far more than a worker's start on a loaded machine
            # (30 s was not enough once in CI) and its first sweep, far less than saq's
            # own timeout (6 minutes).
            jobs = wait_all_finished(client, headers, [job_id], rounds=240)
        finally:
            worker.terminate()
            worker.wait(30)
    # The worker's log says when it started and whether its sweeper found the job.
    assert [job["status"] for job in jobs] == ["COMPLETED"], (tmp_path / "w.log").read_text()


def test_an_idle_sweep_finds_nothing_and_fails_nothing(
    settings_factory, server_factory, backend, tmp_path: Path
) -> None:
    """The sweeper looks at once when a worker starts, when nothing is due yet: that look,
    and the one after a job ran, must pass without an error in the worker's log."""
    if not backend.scaleout:
        pytest.skip("saq on Redis only (scale-out run)")
    settings = settings_factory()
    server = server_factory(settings, JOBS_INPROCESS_WORKERS="false", **FAST_RECOVERY)
    log = tmp_path / "w.log"
    worker = start_process(["worker"], server_env(settings, **FAST_RECOVERY), log)
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            headers = shared_key_headers(client)
            for _ in range(240):  # until the worker is up, and so its first sweep
                if "vpsapi worker" in log.read_text():
                    break
                time.sleep(0.5)
            time.sleep(1)
            job_id = submit_type1_job(client, headers, items=1, delay_ms=0)
            jobs = wait_all_finished(client, headers, [job_id], rounds=240)
            time.sleep(SWEEP_INTERVAL + 1)  # one more sweep, over a finished job
    finally:
        worker.terminate()
        worker.wait(30)
    assert [job["status"] for job in jobs] == ["COMPLETED"]
    assert "job_sweep_failed" not in log.read_text(), log.read_text()


async def _take_and_die(queue: Queue) -> None:
    """What a worker leaves when killed right after taking a job: saq's job active, its
    start a while ago, and the row untouched."""
    try:
        taken = await queue.dequeue(timeout=5)
        assert taken is not None, "the submitted job was queued"
        taken.started = saq_time.now() - 60_000
        taken.attempts += 1
        taken.worker_id = "killed-worker"
        await taken.update(status=Status.ACTIVE)
    finally:
        await queue.disconnect()


def test_server_killed_mid_run_resumes_after_restart(
    settings_factory, server_factory, backend
) -> None:
    if backend.scaleout:
        pytest.skip("embedded default: workers live inside the server process")
    settings = settings_factory()
    server = server_factory(settings, **FAST_RECOVERY)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        headers = shared_key_headers(client)
        ids = _submit_slow_jobs(client, headers)
        wait_until_running(client, headers)
    server.stop(signal.SIGKILL)
    restarted = server_factory(settings, **FAST_RECOVERY)
    with httpx.Client(base_url=restarted.base_url, timeout=30) as client:
        jobs = wait_all_finished(client, shared_key_headers(client), ids)
    assert [job["status"] for job in jobs] == ["COMPLETED"] * JOB_COUNT


def test_job_streams_live_through_another_server(settings_factory, server_factory, backend) -> None:
    if not backend.scaleout:
        pytest.skip("two server processes share events through Redis (scale-out run)")
    settings = settings_factory()
    submit_server = server_factory(settings, JOBS_INPROCESS_WORKERS="true")
    stream_server = server_factory(settings, JOBS_INPROCESS_WORKERS="false")
    with httpx.Client(base_url=submit_server.base_url) as client:
        headers = shared_key_headers(client)
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
