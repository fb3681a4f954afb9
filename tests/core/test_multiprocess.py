"""Real `vpsapi serve` processes: a shared rate limit on Redis, graceful SIGTERM."""

from __future__ import annotations

import signal
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from jobs_support import shared_key_headers, submit_type1_job, wait_all_finished

pytestmark = pytest.mark.multiprocess


def test_two_processes_share_one_rate_limit(settings_factory, server_factory, backend) -> None:
    if not backend.scaleout:
        pytest.skip("a limit shared across processes needs Redis (scale-out run)")
    settings = settings_factory(rate_limit_enabled=True)
    first = server_factory(settings, RATE_LIMIT_DEFAULT="4/minute")
    second = server_factory(settings, RATE_LIMIT_DEFAULT="4/minute")
    statuses = []
    remaining = []
    for index in range(6):
        server = (first, second)[index % 2]
        response = httpx.get(server.base_url + "/api/v1/info", timeout=10)
        statuses.append(response.status_code)
        remaining.append(response.headers["x-ratelimit-remaining"])
    assert statuses == [200, 200, 200, 200, 429, 429]
    assert remaining[:4] == ["3", "2", "1", "0"]


def test_sigterm_lets_in_flight_requests_finish(settings_factory, server_factory) -> None:
    settings = settings_factory()
    server = server_factory(settings)
    host, port = server.base_url.removeprefix("http://").split(":")
    body = b'{"email": "admin@example.com", "password": "wrong-password"}'
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        # Half a request is in flight when SIGTERM arrives; the rest follows after.
        conn.sendall(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert server.process.poll() is None, "the server waits for the in-flight request"
        conn.sendall(body[10:])
        response = b""
        while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            response += chunk
    assert response.startswith(b"HTTP/1.1 401"), response[:200]
    assert server.process.wait(30) == 0  # drained: a clean exit, not death by the signal


def test_login_refresh_logout_across_processes(settings_factory, server_factory, backend) -> None:
    if not backend.scaleout:
        pytest.skip("two server processes share one database in the scale-out run")
    settings = settings_factory()
    first = server_factory(settings)
    second = server_factory(settings)
    login = httpx.post(
        first.base_url + "/api/v1/auth/login",
        json={"email": "admin@example.com", "password": "admin-password-for-tests"},
    ).json()["data"]
    refreshed = httpx.post(
        second.base_url + "/api/v1/auth/refresh", json={"refreshToken": login["refreshToken"]}
    )
    assert refreshed.status_code == 200
    headers = {"Authorization": f"Bearer {refreshed.json()['data']['accessToken']}"}
    assert httpx.get(first.base_url + "/api/v1/me", headers=headers).status_code == 200
    assert httpx.post(second.base_url + "/api/v1/auth/logout", headers=headers).status_code == 200
    for server in (first, second):
        assert httpx.get(server.base_url + "/api/v1/me", headers=headers).status_code == 401


def test_a_real_server_does_not_name_its_software(settings_factory, server_factory) -> None:
    server = server_factory(settings_factory())
    response = httpx.get(server.base_url + "/health/live", timeout=10)
    assert response.status_code == 200
    assert "server" not in response.headers  # as helmet hides Express's X-Powered-By
    assert "date" in response.headers


def test_a_server_whose_jobs_need_workers_says_so(settings_factory, server_factory) -> None:
    """With Redis (or REDIS_HOST) jobs wait for `vpsapi worker`: told at start, not found
    out from jobs that stay pending."""
    without = server_factory(settings_factory(), JOBS_INPROCESS_WORKERS="false")
    assert "start at least one" in without.log_path.read_text()
    within = server_factory(settings_factory(), JOBS_INPROCESS_WORKERS="true")
    assert "start at least one" not in within.log_path.read_text()


def test_redis_named_by_parts_runs_jobs_inside_serve(
    settings_factory, server_factory, backend
) -> None:
    """Seed 000's .env names Redis by parts and runs one process, whose worker is inside:
    a job submitted to that setup completes without a `vpsapi worker`."""
    if not backend.scaleout:
        pytest.skip("needs the scale-out run's Redis")
    redis = urlsplit(backend.redis_url)
    server = server_factory(
        settings_factory(),
        REDIS_URL="",
        REDIS_HOST=redis.hostname or "127.0.0.1",
        REDIS_PORT=str(redis.port or 6379),
        REDIS_DB=redis.path.strip("/") or "0",
    )
    assert "start at least one" not in server.log_path.read_text()
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        headers = shared_key_headers(client)
        job_id = submit_type1_job(client, headers, items=2, delay_ms=0)
        [job] = wait_all_finished(client, headers, [job_id])
    assert job["status"] == "COMPLETED", job
