"""Two `vpsapi serve` processes behind a private nginx running the repository's own
site file (deploy/nginx/vpsapi.conf): SSE arrives unbuffered through nginx, and one
rate limit holds across both processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from support import SHARED_API_KEY, free_port, render_nginx_site

pytestmark = [
    pytest.mark.multiprocess,
    pytest.mark.skipif(
        shutil.which("nginx") is None, reason="nginx is not installed (CI installs it)"
    ),
]


@pytest.fixture
def behind_nginx(settings_factory, server_factory, backend, tmp_path: Path) -> Iterator[str]:
    if not backend.scaleout:
        pytest.skip(
            "several server processes share state through PostgreSQL + Redis (scale-out run)"
        )
    settings = settings_factory(rate_limit_enabled=True)
    extra = {"RATE_LIMIT_DEFAULT": "1000/minute", "JOBS_INPROCESS_WORKERS": "true"}
    servers = [server_factory(settings, **extra), server_factory(settings, **extra)]
    port = free_port()
    conf = render_nginx_site(tmp_path, [s.base_url.removeprefix("http://") for s in servers], port)
    nginx = subprocess.Popen(
        ["nginx", "-p", str(tmp_path), "-c", str(conf)], stderr=subprocess.PIPE
    )
    base = f"https://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(base + "/health/live", verify=False, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base
    finally:
        nginx.terminate()
        nginx.wait(10)


def test_sse_arrives_unbuffered_through_nginx(behind_nginx: str) -> None:
    with httpx.Client(base_url=behind_nginx, verify=False, timeout=60) as client:
        token = client.post("/api/auth/token", headers={"X-API-Key": SHARED_API_KEY}).json()[
            "token"
        ]
        job_id = client.post(
            "/api/jobs",
            json={
                "processingType": "type1",
                "data": [{"i": i} for i in range(10)],
                "options": {"delayMs": 200},
            },
            headers={"Authorization": f"Bearer {token}"},
        ).json()["jobId"]
        seen: list[tuple[float, dict]] = []
        with client.stream("GET", f"/api/sse/job-progress/{job_id}?access_token={token}") as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    payload = json.loads(line[5:])
                    if "status" in payload:
                        seen.append((time.time(), payload))
    assert seen[-1][1]["status"] == "COMPLETED"
    live = [p for _, p in seen if p["status"] == "PROCESSING" and 0 < p["progress"] < 100]
    assert len(live) >= 3, "progress reached the client while the job ran"
    # Unbuffered: a progress event reached the client before the job had finished.
    finished = datetime.fromisoformat(seen[-1][1]["completedAt"].replace("Z", "+00:00"))
    first_live = next(at for at, p in seen if p["status"] == "PROCESSING" and p["progress"] > 0)
    assert first_live < finished.timestamp()


def test_one_rate_limit_across_both_processes(behind_nginx: str) -> None:
    with httpx.Client(base_url=behind_nginx, verify=False, timeout=10) as client:
        limits = set()
        remaining = []
        for _ in range(6):
            response = client.get("/api/v1/info")
            assert response.status_code == 200
            limits.add(response.headers["x-ratelimit-limit"])
            remaining.append(int(response.headers["x-ratelimit-remaining"]))
    assert limits == {"1000"}
    # One counter for both processes: every answer saw the previous one's hit.
    assert remaining == sorted(remaining, reverse=True) and len(set(remaining)) == 6
