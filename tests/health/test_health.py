from __future__ import annotations

from pathlib import Path

import httpx
import psutil
import pytest


async def test_health_has_seed_fields(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["status"] == "healthy"
    assert body["timestamp"].endswith("Z")
    assert isinstance(body["uptime"], int | float)
    # Node's `process.memoryUsage()` fields, as seed 000 returns them.
    assert set(body["memory"]) == {"rss", "heapTotal", "heapUsed", "external", "arrayBuffers"}
    assert response.headers["x-request-id"]


async def test_live(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json()["status"] == "alive"


async def test_ready_reports_checks(
    client: httpx.AsyncClient, backend, monkeypatch: pytest.MonkeyPatch, cgroup_root: Path
) -> None:
    # The memory check reads the test's own figures, not the machine's.
    roomy = psutil.virtual_memory()._replace(percent=10.0)
    monkeypatch.setattr("vpsapi.core.memory.psutil.virtual_memory", lambda: roomy)
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    # Seed 001's sample, `redis: healthy`, on either backend; the embedded one says why.
    notes = (
        {}
        if backend.scaleout
        else {"notes": {"redis": "not configured: limits, events and the job queue are in-process"}}
    )
    assert body == {
        "success": True,
        "status": "ready",
        "checks": {
            "database": "healthy",
            "redis": "healthy",
            "storage": "healthy",
            "memory": "healthy",
            "responseTime": "healthy",
        },
        **notes,
    }


@pytest.fixture
def cgroup_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A control-group file system of the test's making (empty: no limit), this process
    in its root group as in a container's own namespace."""
    own = tmp_path / "self-cgroup"
    own.write_text("0::/\n")
    root = tmp_path / "cgroup"
    root.mkdir()
    monkeypatch.setattr("vpsapi.core.memory.CGROUP_ROOT", root)
    monkeypatch.setattr("vpsapi.core.memory.OWN_CGROUP", own)
    return root


async def test_ready_reports_memory_and_slowness_without_failing(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, cgroup_root: Path
) -> None:
    """Seed 004's checks (memory under 90 %, an average answer under a second) are reported
    only: on a shared host the memory is every process's, and a slow process taken out of
    rotation would slow the others. Without a control-group limit the host's memory
    counts."""
    for _ in range(3):
        client.app.state.response_times.add(2.5)  # type: ignore[attr-defined]
    full = psutil.virtual_memory()._replace(percent=93.0)
    monkeypatch.setattr("vpsapi.core.memory.psutil.virtual_memory", lambda: full)
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert (body["checks"]["memory"], body["checks"]["responseTime"]) == ("high", "slow")


def _write_group(group: Path, files: dict[str, str]) -> None:
    group.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (group / name).write_text(text)


@pytest.mark.parametrize(
    ("own_group", "layout", "memory"),
    [
        # v2 in a container: 950 of 1,000 bytes, none of it reclaimable cache.
        (
            "0::/",
            {
                "": {
                    "memory.max": "1000\n",
                    "memory.current": "950\n",
                    "memory.stat": "anon 900\ninactive_file 0\n",
                }
            },
            "high",
        ),
        # The same with 100 bytes of inactive file cache, which the kernel reclaims first.
        (
            "0::/",
            {
                "": {
                    "memory.max": "1000\n",
                    "memory.current": "950\n",
                    "memory.stat": "active_file 5\ninactive_file 100\n",
                }
            },
            "healthy",
        ),
        # v2 on a host: a systemd unit's MemoryMax=, found through /proc/self/cgroup.
        (
            "0::/system.slice/vpsapi.service",
            {
                "system.slice/vpsapi.service": {
                    "memory.max": "2048\n",
                    "memory.current": "2000\n",
                    "memory.stat": "inactive_file 0\n",
                }
            },
            "high",
        ),
        # v2: the unit has no limit of its own, its slice has one (and binds it too).
        (
            "0::/app.slice/vpsapi.service",
            {
                "app.slice/vpsapi.service": {
                    "memory.max": "max\n",
                    "memory.current": "100\n",
                    "memory.stat": "inactive_file 0\n",
                },
                "app.slice": {
                    "memory.max": "1000\n",
                    "memory.current": "960\n",
                    "memory.stat": "inactive_file 0\n",
                },
            },
            "high",
        ),
        # v1 (memory controller mounted apart) in a container: the mount's top is its
        # group; the hierarchy's inactive cache (total_) is what is left out.
        (
            "4:memory:/docker/abc",
            {
                "memory": {
                    "memory.limit_in_bytes": "4096\n",
                    "memory.usage_in_bytes": "4000\n",
                    "memory.stat": "inactive_file 9\ntotal_inactive_file 500\n",
                }
            },
            "healthy",
        ),
        # v1 on a host: the group named in /proc/self/cgroup has no limit ("a number near
        # 2**63"); its slice has one, nearly used up by the slice's other services.
        (
            "4:memory:/system.slice/vpsapi.service",
            {
                "memory/system.slice": {
                    "memory.limit_in_bytes": "2048\n",
                    "memory.usage_in_bytes": "1990\n",
                    "memory.stat": "total_inactive_file 0\n",
                },
                "memory/system.slice/vpsapi.service": {
                    "memory.limit_in_bytes": "9223372036854771712\n",
                    "memory.usage_in_bytes": "600\n",
                    "memory.stat": "total_inactive_file 0\n",
                },
            },
            "high",
        ),
    ],
)
async def test_ready_memory_is_the_containers_when_it_has_a_limit(
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    cgroup_root: Path,
    own_group: str,
    layout: dict[str, dict[str, str]],
    memory: str,
) -> None:
    """The host has room (10 % in use) but the container's limit is what gets the process
    killed."""
    (cgroup_root.parent / "self-cgroup").write_text(own_group + "\n")
    for group, files in layout.items():
        _write_group(cgroup_root / group, files)
    roomy = psutil.virtual_memory()._replace(percent=10.0)
    monkeypatch.setattr("vpsapi.core.memory.psutil.virtual_memory", lambda: roomy)
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["memory"] == memory


@pytest.mark.parametrize("limit", ["max\n", str(2**63 - 4096) + "\n"])
async def test_ready_memory_without_a_limit_is_the_hosts(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, cgroup_root: Path, limit: str
) -> None:
    """No limit ("max" in v2, a number near 2**63 in v1's way) leaves the host's figure."""
    _write_group(
        cgroup_root,
        {"memory.max": limit, "memory.current": "950\n", "memory.stat": "inactive_file 0\n"},
    )
    full = psutil.virtual_memory()._replace(percent=95.0)
    monkeypatch.setattr("vpsapi.core.memory.psutil.virtual_memory", lambda: full)
    response = await client.get("/health/ready")
    assert response.json()["checks"]["memory"] == "high"


async def test_a_slow_spell_long_past_is_forgotten(client: httpx.AsyncClient) -> None:
    """The average covers the last one or two windows only: slowness two windows ago no
    longer counts. (The window's clock is the test's: a loaded machine cannot move it.)"""
    times = client.app.state.response_times  # type: ignore[attr-defined]
    now = [1000.0]
    times.clock = lambda: now[0]
    times.window_start = now[0]
    times.add(5.0)
    assert (await client.get("/health/ready")).json()["checks"]["responseTime"] == "slow"
    now[0] += 1.5 * times.window_seconds  # one window on: still counted
    assert (await client.get("/health/ready")).json()["checks"]["responseTime"] == "slow"
    now[0] += 2.5 * times.window_seconds  # more than two windows past it
    assert (await client.get("/health/ready")).json()["checks"]["responseTime"] == "healthy"


async def test_both_readiness_probes_answer_503_when_the_database_fails(
    client: httpx.AsyncClient,
) -> None:
    async def broken() -> None:
        raise ConnectionRefusedError("database down")

    client.app.state.db.ping = broken  # type: ignore[attr-defined]
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["database"] == "unhealthy"
    assert "database" in body["errors"]
    # Seed 003's own probe, in its words.
    seed_003 = await client.get("/api/health")
    assert seed_003.status_code == 503
    assert (seed_003.json()["status"], seed_003.json()["database"]) == ("ERROR", "ERROR")


async def test_metrics_prometheus_text(client: httpx.AsyncClient) -> None:
    await client.get("/health")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'vpsapi_http_requests_total{method="GET",route="/health",status="200"}' in response.text
    assert "vpsapi_http_request_duration_seconds_bucket" in response.text
    assert "vpsapi_http_requests_in_flight" in response.text


async def test_seed_003_health_names_database_and_redis(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "OK"
    assert body["database"] == "OK"
    assert body["redis"] == "OK"  # the real one, or without REDIS_URL the in-process one
    assert isinstance(body["timestamp"], int) and body["timestamp"] > 1_700_000_000_000
    assert isinstance(body["uptime"], int | float)
