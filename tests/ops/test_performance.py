"""Cache and connection-pool figures, cache clearing, ops tasks on the jobs engine."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from support import ADMIN_EMAIL, ADMIN_PASSWORD, login
from vpsapi.ops.audit.models import AuditEntry


@pytest.fixture
async def perf_client(make_client: Any, private_nginx: Any) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await make_client(
        jobs_inprocess_workers=True, **private_nginx.settings()
    )
    return client


@pytest.fixture
async def admin(perf_client: httpx.AsyncClient) -> dict[str, str]:
    tokens = await login(perf_client, ADMIN_EMAIL, ADMIN_PASSWORD)
    return {"Authorization": f"Bearer {tokens['accessToken']}"}


@pytest.fixture
async def viewer(perf_client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, str]:
    body = {"email": "perf-viewer@example.com", "password": "viewer-password-1", "role": "user"}
    response = await perf_client.post("/api/v1/users", json=body, headers=admin)
    assert response.status_code == 201, response.text
    tokens = await login(perf_client, body["email"], body["password"])
    return {"Authorization": f"Bearer {tokens['accessToken']}"}


async def audit_actions(client: httpx.AsyncClient) -> list[str]:
    async with client.app.state.db.session() as session:  # type: ignore[attr-defined]
        return [e.action for e in (await session.execute(select(AuditEntry))).scalars()]


async def test_cache_counts_lookups_and_clear_drops_only_its_keys(
    perf_client: httpx.AsyncClient, admin: dict[str, str], viewer: dict[str, str]
) -> None:
    for _ in range(2):  # the nginx version is cached: one miss, then a hit
        assert (await perf_client.get("/api/system/status", headers=viewer)).status_code == 200
    stats = await perf_client.get("/api/performance/cache/stats", headers=admin)
    assert stats.status_code == 200, stats.text
    body = stats.json()
    assert body["entries"] == 1 and body["hits"] >= 1 and body["misses"] >= 1
    redis = perf_client.app.state.redis  # type: ignore[attr-defined]
    prefix = perf_client.app.state.settings.redis_prefix  # type: ignore[attr-defined]
    if redis is not None:
        assert body["backend"] == "redis" and body["redis"]["connected"] is True
        assert "keyspace_hits" in body["redis"]
        # Keys of the service that are not cache, and of anyone else, must survive a clear.
        await redis.set(f"{prefix}:rl:keep-me", "1")
        await redis.set(f"other-{prefix}:cache:keep-me", "1")
    else:
        assert body["backend"] == "memory" and body["redis"] is None

    denied = await perf_client.post("/api/performance/cache/clear", headers=viewer)
    assert denied.status_code == 403
    cleared = await perf_client.post("/api/performance/cache/clear", headers=admin)
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["removed"] == 1
    after = await perf_client.get("/api/performance/cache/stats", headers=admin)
    assert after.json()["entries"] == 0
    assert await audit_actions(perf_client) == ["performance.cache.clear"]
    if redis is not None:
        assert await redis.get(f"{prefix}:rl:keep-me") == b"1"
        assert await redis.get(f"other-{prefix}:cache:keep-me") == b"1"
        await redis.delete(f"other-{prefix}:cache:keep-me")


async def test_connection_pool_stats(
    perf_client: httpx.AsyncClient, admin: dict[str, str], viewer: dict[str, str]
) -> None:
    response = await perf_client.get("/api/performance/connections", headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["database"]["dialect"] in ("sqlite", "postgresql")
    assert body["database"]["checked_out"] >= 1  # this request's session
    if perf_client.app.state.redis is not None:  # type: ignore[attr-defined]
        assert body["redis"]["max_connections"] >= 1
    else:
        assert body["redis"] is None
    for path in ("/api/performance/connections", "/api/performance/cache/stats"):
        assert (await perf_client.get(path, headers=viewer)).status_code == 403
        assert (await perf_client.get(path)).status_code == 401


async def wait_for_job(client: httpx.AsyncClient, job_id: str, headers: dict[str, str]) -> Any:
    for _ in range(300):
        job = (await client.get(f"/api/jobs/{job_id}", headers=headers)).json()
        if job["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


async def test_nginx_test_task_runs_as_a_job(
    perf_client: httpx.AsyncClient, admin: dict[str, str], private_nginx: Any
) -> None:
    queued = await perf_client.post("/api/tasks/queue", json={"task": "nginx_test"}, headers=admin)
    assert queued.status_code == 202, queued.text
    body = queued.json()
    assert body["job_id"] == body["jobId"] and body["status_url"] == f"/api/jobs/{body['job_id']}"
    job = await wait_for_job(perf_client, body["job_id"], admin)
    assert job["status"] == "COMPLETED", job
    assert job["result"]["task"] == "nginx_test"
    assert job["result"]["result"]["ok"] is True
    assert "syntax is ok" in job["result"]["result"]["output"]

    # A broken configuration is the task's finding, not a job failure.
    (private_nginx.conf_dir / "vpsapi-broken.conf").write_text("server { listen nonsense; }\n")
    queued = await perf_client.post(
        "/api/tasks/queue", json={"task": "nginx_test", "params": {}}, headers=admin
    )
    job = await wait_for_job(perf_client, queued.json()["job_id"], admin)
    assert job["status"] == "COMPLETED"
    assert job["result"]["result"]["ok"] is False
    assert "listen" in job["result"]["result"]["output"]

    status = await perf_client.get("/api/tasks/queue/status", headers=admin)
    assert status.status_code == 200, status.text
    assert status.json()["by_status"]["COMPLETED"] == 2
    assert status.json()["pending_tasks"] == 0
    assert "nginx_test" in status.json()["tasks"]
    assert await audit_actions(perf_client) == ["tasks.queue", "tasks.queue"]


async def test_queue_refuses_bad_requests_and_non_admins(
    perf_client: httpx.AsyncClient, admin: dict[str, str], viewer: dict[str, str]
) -> None:
    for body in (
        {"task": "rm -rf /"},
        {"task": "backup"},  # not installed in this build: refused, not queued
        {},
        {"task": ""},
        {"task": "nginx_test", "params": []},
        {"task": "nginx_test", "function": "os.system"},
    ):
        response = await perf_client.post("/api/tasks/queue", json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"]
    assert (
        await perf_client.post("/api/tasks/queue", json={"task": "nginx_test"}, headers=viewer)
    ).status_code == 403
    assert (await perf_client.get("/api/tasks/queue/status", headers=viewer)).status_code == 403
    status = await perf_client.get("/api/tasks/queue/status", headers=admin)
    assert sum(status.json()["by_status"].values()) == 0
    # Nothing queued is audited as done; the refusals the service itself made (an unknown
    # or uninstalled task) are audited as failures.
    assert set(await audit_actions(perf_client)) <= {"POST /api/tasks/queue"}


@pytest.mark.parametrize(
    "params",
    [
        '{"a": "\\ud800"}',  # an unpaired surrogate, as a JSON escape
        '{"a": ' + "[" * 260 + "]" * 260 + "}",  # deeper than JSON is read back
        '{"a": NaN}',  # Python's json reads it; PostgreSQL's json refuses it (a 500)
        '{"a": [1, -Infinity]}',
    ],
)
async def test_task_params_that_could_not_be_read_back_are_refused(
    perf_client: httpx.AsyncClient, admin: dict[str, str], params: str
) -> None:
    """Queued, such params made every read of the job (and the jobs list, and the audit
    log page holding it) a 500."""
    body = '{"task": "echo", "params": ' + params + "}"
    response = await perf_client.post(
        "/api/tasks/queue",
        content=body,
        headers={**admin, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "params"] and "unpaired surrogates" in error["msg"]
    status = await perf_client.get("/api/tasks/queue/status", headers=admin)
    assert sum(status.json()["by_status"].values()) == 0
    assert (await perf_client.get("/api/jobs", headers=admin)).status_code == 200
    assert (await perf_client.get("/api/logs/audit", headers=admin)).status_code == 200


async def test_ops_task_jobs_cannot_be_submitted_through_the_jobs_api(
    perf_client: httpx.AsyncClient, viewer: dict[str, str]
) -> None:
    response = await perf_client.post(
        "/api/jobs",
        json={
            "processingType": "ops_task",
            "data": [{"task": "nginx_test", "params": {}, "ops_seal": "0" * 64}],
            "options": {"attempts": 1},
        },
        headers=viewer,
    )
    # Not a public job type (and a forged seal would fail the job anyway).
    assert response.status_code == 400, response.text
    assert "processingType" in response.text


async def test_built_in_tasks_echo_log_cleanup_and_backup_create(
    make_client: Any, private_nginx: Any, tmp_path: Path
) -> None:
    client = await make_client(
        **private_nginx.settings(),
        jobs_inprocess_workers=True,
        ssl_cert_dir=tmp_path / "ssl",
        backup_dir=tmp_path / "backups",
    )
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    admin = {"Authorization": f"Bearer {tokens['accessToken']}"}

    async def run(task: str, params: dict[str, Any]) -> Any:
        queued = await client.post(
            "/api/tasks/queue", json={"task": task, "params": params}, headers=admin
        )
        assert queued.status_code == 202, queued.text
        job = await wait_for_job(client, queued.json()["job_id"], admin)
        assert job["status"] == "COMPLETED", job
        assert job["result"]["task"] == task
        return job["result"]["result"]

    status = (await client.get("/api/tasks/queue/status", headers=admin)).json()
    assert {"nginx_test", "log_cleanup", "backup_create", "echo"} <= set(status["tasks"])

    # echo: the params back, from the worker that ran it.
    echoed = await run("echo", {"hello": ["queue", 1]})
    assert echoed["echo"] == {"hello": ["queue", 1]} and ":" in echoed["worker"]

    # log_cleanup: the retention policy applied now (auto_cleanup is off).
    logs = client.app.state.settings.effective_log_dir  # type: ignore[attr-defined]
    old = logs / "application.log.4"
    old.write_text('{"event": "old"}\n')
    moment = time.time() - 60 * 86400
    os.utime(old, (moment, moment))
    cleaned = await run("log_cleanup", {})
    assert [item["file"] for item in cleaned["removed_files"]] == ["application.log.4"]
    assert not old.exists()
    audit = (
        await client.get("/api/logs/audit", params={"action": "logs.cleanup"}, headers=admin)
    ).json()["entries"]
    assert audit[0]["actor"] == "log-retention" and audit[0]["after"]["job_id"]

    # backup_create: an archive like POST /api/backup/create's, listed at once.
    made = await run("backup_create", {"description": "from the queue"})
    listing = (await client.get("/api/backup/list", headers=admin)).json()["backups"]
    assert [(b["filename"], b["description"], b["created_by"]) for b in listing] == [
        (made["filename"], "from the queue", "admin")
    ]
    assert (tmp_path / "backups" / made["filename"]).is_file()
    assert made["retention_deleted"] == []


async def test_task_params_are_checked_when_queued(
    perf_client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for body, words in (
        ({"task": "log_cleanup", "params": {"days": 1}}, "days"),
        ({"task": "backup_create", "params": {"description": "x" * 501}}, "description"),
        ({"task": "backup_create", "params": {"filename": "../x.tar.gz"}}, "filename"),
        ({"task": "nope"}, "available: backup_create, echo, log_cleanup, nginx_test"),
    ):
        response = await perf_client.post("/api/tasks/queue", json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
        assert words in response.json()["detail"]
    status = await perf_client.get("/api/tasks/queue/status", headers=admin)
    assert sum(status.json()["by_status"].values()) == 0
