"""The scale-out deployment, for real: two `vpsapi serve` and two `vpsapi worker` processes
on PostgreSQL + Redis behind a private nginx running the repository's own site file
(deploy/nginx/vpsapi.conf). Nothing may depend on which process a request lands on, and
losing a process loses nothing."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobs_support import (
    shared_key_headers,
    submit_type1_job,
    wait_all_finished,
    wait_until_running,
)
from support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    ServerProcess,
    free_port,
    render_nginx_site,
    server_env,
    start_process,
)

pytestmark = [
    pytest.mark.multiprocess,
    pytest.mark.skipif(
        shutil.which("nginx") is None, reason="nginx is not installed (CI installs it)"
    ),
]

CLUSTER_ENV = {
    "RATE_LIMIT_DEFAULT": "1000/minute",
    "JOBS_INPROCESS_WORKERS": "false",
    "JOB_LEASE_SECONDS": "2",
    "JOBS_WORKERS": "8",
    "METRICS_INTERVAL": "0.5",
    "AI_MODELS_ENABLED": "false",  # a GET that answers 503, for the rotation test
}


@dataclass
class Cluster:
    base_url: str  # nginx, TLS
    servers: list[ServerProcess]
    workers: list[subprocess.Popen[bytes]]
    tmp: Path
    env: dict[str, str]
    extra_workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 30)
        return httpx.Client(base_url=self.base_url, verify=False, **kwargs)

    def token_headers(self) -> dict[str, str]:
        with self.client() as client:
            return shared_key_headers(client)


@pytest.fixture
def cluster(settings_factory, server_factory, backend, tmp_path: Path) -> Iterator[Cluster]:
    if not backend.scaleout:
        pytest.skip("several processes share state through PostgreSQL + Redis (scale-out run)")
    settings = settings_factory(rate_limit_enabled=True)
    servers = [server_factory(settings, **CLUSTER_ENV) for _ in range(2)]
    env = server_env(settings, **CLUSTER_ENV)
    workers = [start_process(["worker"], env, tmp_path / f"worker{i}.log") for i in range(2)]
    port = free_port()
    conf = render_nginx_site(tmp_path, [s.base_url.removeprefix("http://") for s in servers], port)
    nginx = subprocess.Popen(
        ["nginx", "-p", str(tmp_path), "-c", str(conf)], stderr=subprocess.PIPE
    )
    running = Cluster(f"https://127.0.0.1:{port}", servers, workers, tmp_path, env)
    try:
        for _ in range(100):
            try:
                httpx.get(running.base_url + "/health/live", verify=False, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield running
    finally:
        nginx.terminate()
        nginx.wait(10)
        for worker in [*workers, *running.extra_workers]:
            if worker.poll() is None:
                worker.terminate()
                try:
                    worker.wait(30)
                except subprocess.TimeoutExpired:
                    worker.kill()


@dataclass
class Followed:
    events: list[tuple[float, int, dict[str, Any]]] = field(default_factory=list)
    broken_connections: int = 0  # streams that ended in a transport error, not cleanly


def follow(
    cluster: Cluster, job_id: str, token: str, record: Followed | None = None
) -> list[tuple[float, int, dict[str, Any]]]:
    """Follow a job's SSE stream through nginx like a browser's EventSource: on a broken
    connection reconnect with `Last-Event-ID`. Returns (arrival time, event id, payload)."""
    record = record if record is not None else Followed()
    seen = record.events
    last_id: int | None = None
    for _attempt in range(20):
        headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
        event_id: int | None = None
        try:
            with (
                cluster.client(timeout=60) as client,
                client.stream(
                    "GET", f"/api/sse/job-progress/{job_id}?access_token={token}", headers=headers
                ) as stream,
            ):
                for line in stream.iter_lines():
                    if line.startswith("id:"):
                        event_id = int(line[3:].strip())
                    elif line.startswith("data:"):
                        payload = json.loads(line[5:])
                        if "status" in payload and event_id is not None:
                            seen.append((time.time(), event_id, payload))
                            last_id = event_id
                            if payload["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                                return seen
        except httpx.HTTPError:
            record.broken_connections += 1
        time.sleep(0.2)  # EventSource's retry delay
    return seen


def test_sse_arrives_unbuffered_through_nginx(cluster: Cluster) -> None:
    headers = cluster.token_headers()
    with cluster.client() as client:
        job_id = submit_type1_job(client, headers, items=10, delay_ms=200)
    seen = follow(cluster, job_id, headers["Authorization"].split()[1])
    assert seen[-1][2]["status"] == "COMPLETED"
    live = [p for _, _, p in seen if p["status"] == "PROCESSING" and 0 < p["progress"] < 100]
    assert len(live) >= 3, "progress reached the client while the job ran"
    # Unbuffered: a progress event reached the client before the job had finished.
    finished = datetime.fromisoformat(seen[-1][2]["completedAt"].replace("Z", "+00:00"))
    first_live = next(at for at, _, p in seen if p["status"] == "PROCESSING" and p["progress"])
    assert first_live < finished.timestamp()


def test_nginx_access_log_masks_tokens_in_urls(cluster: Cluster) -> None:
    """EventSource clients pass `?access_token=`: the deployed site logs the request with
    the token's value masked."""
    headers = cluster.token_headers()
    token = headers["Authorization"].split()[1]
    with cluster.client() as client:
        job_id = submit_type1_job(client, headers, items=1, delay_ms=10)
    follow(cluster, job_id, token)
    access_log = cluster.tmp / "logs" / "access.log"
    wanted = f"GET /api/sse/job-progress/{job_id}?access_token=**** HTTP/1.1"
    for _ in range(100):  # nginx writes the line once the stream has ended
        if wanted in access_log.read_text():
            break
        time.sleep(0.05)
    logged = access_log.read_text()
    assert wanted in logged
    assert token not in logged and token.split(".")[2] not in logged


def test_answered_503s_keep_both_processes_in_rotation(cluster: Cluster) -> None:
    """A 503 is an answer (here AI turned off; a busy process sheds load the same way).
    nginx must not count it as a failed process: with both marked down it would answer
    502 to every request for a while."""
    with cluster.client() as client:
        for _ in range(4):
            assert client.get("/api/v1/ai/providers").status_code == 503
        answers = [client.get("/api/v1/info").status_code for _ in range(4)]
    assert answers == [200] * 4


def test_one_rate_limit_across_both_processes(cluster: Cluster) -> None:
    with cluster.client() as client:
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


def test_limits_key_on_the_real_client_ip_not_nginx(cluster: Cluster) -> None:
    """Two clients from different loopback addresses: nginx connects to the app from
    127.0.0.1 for both, yet each gets its own rate-limit counter (X-Forwarded-For from the
    trusted proxy is honoured)."""

    def remaining_from(source: str, count: int) -> list[int]:
        transport = httpx.HTTPTransport(local_address=source, verify=False)
        with cluster.client(transport=transport) as client:
            return [
                int(client.get("/api/v1/info").headers["x-ratelimit-remaining"])
                for _ in range(count)
            ]

    first = remaining_from("127.0.0.2", 4)
    second = remaining_from("127.0.0.3", 2)
    assert first == [999, 998, 997, 996]
    assert second == [999, 998]


def test_login_refresh_logout_across_processes(cluster: Cluster) -> None:
    a, b = (server.base_url for server in cluster.servers)
    tokens = httpx.post(
        a + "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    ).json()["data"]
    refreshed = httpx.post(
        b + "/api/v1/auth/refresh", json={"refreshToken": tokens["refreshToken"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    access = refreshed.json()["data"]["accessToken"]
    auth = {"Authorization": f"Bearer {access}"}
    assert httpx.get(a + "/api/v1/me", headers=auth).status_code == 200
    assert httpx.post(a + "/api/v1/auth/logout", headers=auth).status_code == 200
    # Revoked everywhere: the other process refuses the access token and the refresh token.
    assert httpx.get(b + "/api/v1/me", headers=auth).status_code == 401
    new_refresh = refreshed.json()["data"]["refreshToken"]
    assert (
        httpx.post(b + "/api/v1/auth/refresh", json={"refreshToken": new_refresh}).status_code
        == 401
    )


def test_each_process_exposes_its_own_metrics(cluster: Cluster) -> None:
    """Documented: scrape every serve process (each `/metrics` counts its own requests)."""
    a, b = (server.base_url for server in cluster.servers)
    for _ in range(3):
        httpx.get(a + "/api/v1/info")
    text_a, text_b = httpx.get(a + "/metrics").text, httpx.get(b + "/metrics").text

    def info_requests(text: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("vpsapi_http_requests_total") and 'route="/api/v1/info"' in line
        )

    assert info_requests(text_a) >= 3
    assert info_requests(text_b) == 0


def test_worker_killed_mid_run_of_200_jobs_loses_none(cluster: Cluster) -> None:
    headers = cluster.token_headers()
    with cluster.client() as client:
        ids = [submit_type1_job(client, headers, items=3, delay_ms=40) for _ in range(200)]
        wait_until_running(client, headers)
        victim = cluster.workers[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        jobs = wait_all_finished(client, headers, ids)
    assert [job["status"] for job in jobs] == ["COMPLETED"] * 200


def test_serve_killed_sse_clients_resume_elsewhere(cluster: Cluster) -> None:
    """kill -9 one serve process while clients stream: nginx fails over, clients reconnect
    with Last-Event-ID and reach the end without gaps or repeats."""
    headers = cluster.token_headers()
    token = headers["Authorization"].split()[1]
    with cluster.client() as client:
        ids = [submit_type1_job(client, headers, items=20, delay_ms=150) for _ in range(4)]

    results: dict[str, list[tuple[float, int, dict[str, Any]]]] = {}
    threads = [
        threading.Thread(target=lambda j=job_id: results.__setitem__(j, follow(cluster, j, token)))
        for job_id in ids
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # streams are open and progress flows
    cluster.servers[0].stop(signal.SIGKILL)
    for thread in threads:
        thread.join(120)

    for job_id in ids:
        events = results[job_id]
        assert events and events[-1][2]["status"] == "COMPLETED", job_id
        event_ids = [event_id for _, event_id, _ in events]
        assert event_ids == sorted(set(event_ids)), "no event twice, in order"
        assert [p["progress"] for _, _, p in events] == sorted(p["progress"] for _, _, p in events)


def test_sigterm_ends_streams_cleanly_and_clients_move_on(cluster: Cluster) -> None:
    """SIGTERM to a serve process while it streams: its SSE streams end cleanly (no broken
    connection), the clients reconnect through nginx to the other process and finish."""
    headers = cluster.token_headers()
    token = headers["Authorization"].split()[1]
    with cluster.client() as client:
        ids = [submit_type1_job(client, headers, items=20, delay_ms=150) for _ in range(4)]
    records = {job_id: Followed() for job_id in ids}
    threads = [
        threading.Thread(target=follow, args=(cluster, job_id, token, records[job_id]))
        for job_id in ids
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    cluster.servers[0].stop(signal.SIGTERM)
    assert cluster.servers[0].process.returncode is not None
    for thread in threads:
        thread.join(120)
    for job_id, record in records.items():
        assert record.events and record.events[-1][2]["status"] == "COMPLETED", job_id
        assert record.broken_connections == 0, job_id


async def test_websocket_and_socketio_through_nginx(cluster: Cluster) -> None:
    """`WS /ws/monitoring` and Socket.IO connect through nginx and receive what either
    process publishes."""
    import ssl

    import socketio
    from websockets.asyncio.client import connect

    a, b = (server.base_url for server in cluster.servers)
    token = httpx.post(
        a + "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    ).json()["data"]["accessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE

    ws_base = cluster.base_url.replace("https://", "wss://")
    async with connect(f"{ws_base}/ws/monitoring?access_token={token}", ssl=insecure) as ws:
        samples = [json.loads(await asyncio.wait_for(ws.recv(), 30)) for _ in range(2)]
    assert all("system" in sample and "alerts" in sample for sample in samples)
    assert samples[0]["timestamp"] < samples[1]["timestamp"]

    base = "/api/v1/citypulse"
    building = httpx.post(a + f"{base}/buildings", json={"name": "Nord"}, headers=headers)
    building_id = building.json()["data"]["id"]
    sensor = httpx.post(
        a + f"{base}/buildings/{building_id}/sensors",
        json={"name": "T1", "kind": "temperature", "unit": "°C"},
        headers=headers,
    ).json()["data"]["id"]
    readings: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    client = socketio.AsyncClient(reconnection=False, ssl_verify=False)
    client.on("sensor:reading", readings.put)
    await client.connect(
        cluster.base_url, socketio_path="ws", transports=["websocket"], auth={"token": token}
    )
    try:
        ack = await client.call("subscribe", {"buildingId": building_id}, timeout=10)
        assert ack["ok"] is True
        for origin, value in ((a, 20.5), (b, 21.5)):  # one reading through each process
            posted = httpx.post(
                origin + f"{base}/sensors/{sensor}/readings",
                json={"value": value, "timestamp": datetime.now(UTC).isoformat()},
                headers=headers,
            )
            assert posted.status_code == 201, posted.text
            event = await asyncio.wait_for(readings.get(), 15)
            assert event["value"] == value
    finally:
        await client.disconnect()
