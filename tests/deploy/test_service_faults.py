"""Redis or PostgreSQL going away mid-run: readiness says so, requests that need the
missing server answer 503 with a clear body (never 500, never a hang), and everything
recovers without restarting our processes; no accepted job is lost.

Each test runs its own private Redis or PostgreSQL (tests/service_support.py) so it can be
stopped without touching the machine's shared servers."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobs_support import post_type1_job, shared_key_headers, wait_all_finished
from service_support import PrivatePostgres, PrivateRedis, postgres_available
from support import ServerProcess, server_env, start_process

pytestmark = pytest.mark.multiprocess

FAST = {"JOBS_INPROCESS_WORKERS": "false", "JOB_LEASE_SECONDS": "2", "JOBS_WORKERS": "4"}
# A hang would exceed this; every answer during an outage must come well before it.
ANSWER_WITHIN_S = 15


@pytest.fixture
def scaleout_only(backend: Any) -> None:
    if not backend.scaleout:
        pytest.skip("PostgreSQL + Redis faults (scale-out run)")


def _submit(client: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    return post_type1_job(client, headers, items=3, delay_ms=100)


def _wait_ready(client: httpx.Client) -> None:
    for _ in range(300):
        try:
            if client.get("/health/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("never became ready again")


def outage_loses_no_job(
    server: ServerProcess,
    stop: Callable[[], None],
    restart: Callable[[], None],
    during: Callable[[httpx.Client, dict[str, str], list[str]], None],
) -> None:
    """Ten jobs accepted, the service stopped, `during(client, headers, accepted)` checks
    the outage (and may add jobs it got accepted), the service back: every accepted job
    completes and new ones are taken, with no restart of our processes."""
    with httpx.Client(base_url=server.base_url, timeout=ANSWER_WITHIN_S) as client:
        headers = shared_key_headers(client)
        accepted = [_submit(client, headers).json()["jobId"] for _ in range(10)]
        stop()
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        during(client, headers, accepted)
        restart()
        _wait_ready(client)
        jobs = wait_all_finished(client, headers, accepted, rounds=240)
        assert [job["status"] for job in jobs] == ["COMPLETED"] * len(accepted)
        assert _submit(client, headers).status_code == 202


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
    def during(client: httpx.Client, headers: dict[str, str], accepted: list[str]) -> None:
        assert client.get("/health/ready").json()["checks"]["redis"] == "unhealthy"
        # The job row is the truth: a submission is still accepted (the sweeper enqueues it
        # once Redis is back) or refused with a clear 503, never a 500 or a hang.
        for _ in range(3):
            response = _submit(client, headers)
            assert response.status_code in (202, 503), response.text
            if response.status_code == 202:
                accepted.append(response.json()["jobId"])
            else:
                assert "redis" in response.text.lower()
        assert client.get(f"/api/jobs/{accepted[0]}", headers=headers).status_code == 200

    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    try:
        settings = settings_factory(redis_url=redis.url)
        server: ServerProcess = server_factory(settings, **FAST)
        worker_factory(server_env(settings, **FAST))
        # Restarted on the same port, empty: whatever was queued in it is gone.
        outage_loses_no_job(server, redis.stop, redis.start, during)
    finally:
        redis.stop()


@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL server binaries not installed")
def test_postgres_restart_mid_run(
    scaleout_only: None,
    settings_factory: Any,
    server_factory: Any,
    worker_factory: Any,
) -> None:
    def during(client: httpx.Client, headers: dict[str, str], _accepted: list[str]) -> None:
        assert client.get("/health/ready").json()["checks"]["database"] == "unhealthy"
        assert client.get("/health/live").status_code == 200
        for response in (client.get("/api/jobs", headers=headers), _submit(client, headers)):
            assert response.status_code == 503, response.text
            assert "database" in response.json()["error"].lower()

    postgres = PrivatePostgres()
    postgres.start()
    try:
        settings = settings_factory(database_url=postgres.url)
        server: ServerProcess = server_factory(settings, **FAST)
        worker_factory(server_env(settings, **FAST))
        outage_loses_no_job(server, lambda: postgres.stop("fast"), postgres.start, during)
    finally:
        postgres.destroy()
