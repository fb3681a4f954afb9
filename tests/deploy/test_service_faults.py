"""Redis or PostgreSQL going away mid-run: readiness says so, requests that need the
missing server answer 503 with a clear body (never 500, never a hang), and everything
recovers without restarting our processes; no accepted job is lost.

Each test runs its own private Redis or PostgreSQL (tests/service_support.py) so it can be
stopped without touching the machine's shared servers."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service_support import PrivatePostgres, PrivateRedis, postgres_available
from support import SHARED_API_KEY, ServerProcess, server_env, start_process

pytestmark = pytest.mark.multiprocess

FAST = {"JOBS_INPROCESS_WORKERS": "false", "JOB_LEASE_SECONDS": "2", "JOBS_WORKERS": "4"}
# A hang would exceed this; every answer during an outage must come well before it.
ANSWER_WITHIN_S = 15


@pytest.fixture
def scaleout_only(backend: Any) -> None:
    if not backend.scaleout:
        pytest.skip("PostgreSQL + Redis faults (scale-out run)")


def _headers(base_url: str) -> dict[str, str]:
    token = httpx.post(base_url + "/api/auth/token", headers={"X-API-Key": SHARED_API_KEY})
    return {"Authorization": f"Bearer {token.json()['token']}"}


def _submit(base_url: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        base_url + "/api/jobs",
        json={
            "processingType": "type1",
            "data": [{"i": i} for i in range(3)],
            "options": {"delayMs": 100},
        },
        headers=headers,
        timeout=ANSWER_WITHIN_S,
    )


def _wait_ready(base_url: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(base_url + "/health/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("never became ready again")


def _all_completed(base_url: str, headers: dict[str, str], ids: list[str]) -> list[str]:
    statuses: list[str] = []
    for _ in range(600):
        statuses = [
            httpx.get(f"{base_url}/api/jobs/{job_id}", headers=headers).json()["status"]
            for job_id in ids
        ]
        if all(status in ("COMPLETED", "FAILED", "CANCELLED") for status in statuses):
            break
        time.sleep(0.2)
    return statuses


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        process = start_process(["worker"], env, tmp_path / f"worker{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def test_redis_restart_mid_run(
    scaleout_only: None,
    settings_factory: Any,
    server_factory: Any,
    worker_factory: Any,
    tmp_path: Path,
) -> None:
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    try:
        settings = settings_factory(redis_url=redis.url)
        server: ServerProcess = server_factory(settings, **FAST)
        worker_factory(server_env(settings, **FAST))
        headers = _headers(server.base_url)
        accepted = [_submit(server.base_url, headers).json()["jobId"] for _ in range(10)]

        redis.stop()
        ready = httpx.get(server.base_url + "/health/ready", timeout=ANSWER_WITHIN_S)
        assert ready.status_code == 503
        assert ready.json()["checks"]["redis"] == "unhealthy"
        # The job row is the truth: a submission is still accepted (the sweeper enqueues it
        # once Redis is back) or refused with a clear 503, never a 500 or a hang.
        for _ in range(3):
            response = _submit(server.base_url, headers)
            assert response.status_code in (202, 503), response.text
            if response.status_code == 202:
                accepted.append(response.json()["jobId"])
            else:
                assert "redis" in response.text.lower()
        status = httpx.get(f"{server.base_url}/api/jobs/{accepted[0]}", headers=headers)
        assert status.status_code == 200

        redis.start()  # same port, empty: whatever was queued in it is gone
        _wait_ready(server.base_url)
        assert _all_completed(server.base_url, headers, accepted) == ["COMPLETED"] * len(accepted)
        assert _submit(server.base_url, headers).status_code == 202
    finally:
        redis.stop()


@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL server binaries not installed")
def test_postgres_restart_mid_run(
    scaleout_only: None,
    settings_factory: Any,
    server_factory: Any,
    worker_factory: Any,
    tmp_path: Path,
) -> None:
    postgres = PrivatePostgres()
    postgres.start()
    try:
        settings = settings_factory(database_url=postgres.url)
        server: ServerProcess = server_factory(settings, **FAST)
        worker_factory(server_env(settings, **FAST))
        headers = _headers(server.base_url)
        accepted = [_submit(server.base_url, headers).json()["jobId"] for _ in range(10)]

        postgres.stop("fast")
        ready = httpx.get(server.base_url + "/health/ready", timeout=ANSWER_WITHIN_S)
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "unhealthy"
        assert httpx.get(server.base_url + "/health/live").status_code == 200
        for call in (
            lambda: httpx.get(
                server.base_url + "/api/jobs", headers=headers, timeout=ANSWER_WITHIN_S
            ),
            lambda: _submit(server.base_url, headers),
        ):
            response = call()
            assert response.status_code == 503, response.text
            assert "database" in response.json()["error"].lower()

        postgres.start()
        _wait_ready(server.base_url)
        assert _all_completed(server.base_url, headers, accepted) == ["COMPLETED"] * len(accepted)
        assert _submit(server.base_url, headers).status_code == 202
    finally:
        postgres.destroy()
