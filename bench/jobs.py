"""Job engine figures: throughput, progress latency, concurrent SSE streams + RSS.

    python bench/jobs.py                 # embedded (SQLite, in-process workers)
    python bench/jobs.py --scaleout      # PostgreSQL + Redis, 1 API server + 2 `vpsapi worker`

Starts its own processes on 127.0.0.1 in a temporary directory and stops them by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import psutil
from common import API_KEY, ROOT, free_port, pg, start, wait_live


async def throughput(client: httpx.AsyncClient, count: int) -> float:
    body = {"processingType": "type1", "data": [{"i": 1}], "options": {"delayMs": 0}}
    started = time.perf_counter()
    sem = asyncio.Semaphore(32)

    async def one() -> None:
        async with sem:
            response = await client.post("/api/jobs", json=body)
            assert response.status_code == 202, response.text

    await asyncio.gather(*(one() for _ in range(count)))
    while True:
        busy = 0
        for status in ("PENDING", "PROCESSING"):
            page = await client.get("/api/jobs", params={"status": status, "limit": 1})
            busy += len(page.json()["jobs"])
        if not busy:
            break
        await asyncio.sleep(0.05)
    return count / (time.perf_counter() - started)


def parse_time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def progress_latency(client: httpx.AsyncClient, items: int) -> list[float]:
    """Seconds from the worker's progress write (updatedAt) to the SSE client reading it."""
    body = {"processingType": "type1", "data": [{}] * items, "options": {"delayMs": 20}}
    job_id = (await client.post("/api/jobs", json=body)).json()["jobId"]
    latencies: list[float] = []
    event = "message"
    async with client.stream("GET", f"/api/sse/job-progress/{job_id}", timeout=120) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:") and event == "message":
                data = json.loads(line.partition(":")[2])
                if data["status"] == "PROCESSING" and data["progress"] > 0:
                    latencies.append(time.time() - parse_time(data["updatedAt"]))
            elif not line:
                event = "message"
    return latencies[1:]  # the first is the table snapshot, not a live event


async def streams(client: httpx.AsyncClient, count: int, pid: int) -> tuple[int, float]:
    body = {"processingType": "type1", "data": [{}], "options": {"delayMs": 60000}}
    job_id = (await client.post("/api/jobs", json=body)).json()["jobId"]
    opened = 0
    ready = asyncio.Event()

    async def hold() -> None:
        nonlocal opened
        async with client.stream("GET", f"/api/sse/job-progress/{job_id}", timeout=120) as s:
            async for line in s.aiter_lines():
                if line.startswith("data:") and '"status"' in line:
                    opened += 1  # the snapshot: this stream is established
                    if opened == count:
                        ready.set()
                    break
            async for _line in s.aiter_lines():
                pass  # hold the stream until the job ends

    tasks = [asyncio.create_task(hold()) for _ in range(count)]
    await asyncio.wait_for(ready.wait(), 120)
    rss = psutil.Process(pid).memory_info().rss / 2**20
    await client.post(f"/api/jobs/{job_id}/cancel")
    await asyncio.gather(*tasks, return_exceptions=True)
    return opened, rss


async def large_payload_reads(
    client: httpx.AsyncClient, megabytes: float, pid: int
) -> tuple[float, float, float]:
    """Status reads of a running job whose input is `megabytes` large: median ms per read,
    the server's CPU ms per read, and median ms per list page holding the job."""
    size = int(megabytes * 2**20) // 1000 - 12  # 1,000 items, the most a job takes
    items = [{"text": secrets.token_hex(size // 2)} for _ in range(1000)]  # incompressible
    body = {"processingType": "type1", "data": items, "options": {"delayMs": 1000}}
    response = await client.post("/api/jobs", json=body, timeout=120)
    response.raise_for_status()
    job_id = response.json()["jobId"]
    server = psutil.Process(pid)
    timings: dict[str, list[float]] = {"status": [], "list": []}
    cpu_before = sum(server.cpu_times()[:2])
    for _ in range(50):
        for name, path in (("status", f"/api/jobs/{job_id}"), ("list", "/api/jobs?limit=20")):
            started = time.perf_counter()
            (await client.get(path)).raise_for_status()
            timings[name].append(time.perf_counter() - started)
    cpu = (sum(server.cpu_times()[:2]) - cpu_before) / 100
    await client.post(f"/api/jobs/{job_id}/cancel")
    return (
        statistics.median(timings["status"]) * 1000,
        cpu * 1000,
        statistics.median(timings["list"]) * 1000,
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scaleout", action="store_true")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4, help="JOBS_WORKERS")
    parser.add_argument("--payload-mb", type=float, default=5, help="the large job's input")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vpsapi-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VPSAPI_")}
    env.update(
        PYTHONPATH=str(ROOT / "src"),
        DATA_DIR=str(tmp / "data"),
        API_KEY=API_KEY,
        JWT_SECRET="bench-jwt-secret-0123456789-abcdefghijklmnop",
        ADMIN_PASSWORD="bench-admin-password",
        RATE_LIMIT_ENABLED="false",
        LOG_LEVEL="WARNING",
        JOBS_WORKERS=str(args.concurrency),
    )
    dbname = f"vpsapi_bench_{uuid.uuid4().hex[:8]}"
    procs: list[subprocess.Popen[bytes]] = []
    if args.scaleout:
        await pg(f'CREATE DATABASE "{dbname}"')
        env.update(
            DATABASE_URL=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{dbname}",
            REDIS_URL="redis://127.0.0.1:6379/0",
            REDIS_PREFIX=dbname,
            JOBS_INPROCESS_WORKERS="false",
        )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    try:
        server = start(["serve", "--port", str(port)], env, tmp / "serve.log")
        procs.append(server)
        wait_live(base, server)
        if args.scaleout:
            for index in range(2):
                procs.append(start(["worker"], env, tmp / f"worker{index}.log"))
        token = httpx.post(base + "/api/auth/token", headers={"X-API-Key": API_KEY}).json()
        headers = {"Authorization": f"Bearer {token['token']}"}
        limits = httpx.Limits(max_connections=args.streams + 50)
        async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:
            mode = "Redis + PostgreSQL, 2 workers" if args.scaleout else "embedded SQLite"
            print(f"mode: {mode}")
            rate = await throughput(client, args.jobs)
            print(f"throughput: {rate:.0f} jobs/s end-to-end ({args.jobs} one-item type1 jobs)")
            lat = sorted(await progress_latency(client, 200))
            p50 = statistics.median(lat) * 1000
            p99 = lat[int(len(lat) * 0.99) - 1] * 1000
            print(
                f"progress latency worker->SSE: p50 {p50:.1f} ms, p99 {p99:.1f} ms (n={len(lat)})"
            )
            status_ms, cpu_ms, list_ms = await large_payload_reads(
                client, args.payload_mb, server.pid
            )
            print(
                f"a running job with a {args.payload_mb:g} MB input: status p50 {status_ms:.1f}"
                f" ms, list page p50 {list_ms:.1f} ms, server CPU {cpu_ms:.1f} ms per read"
            )
            opened, rss = await streams(client, args.streams, server.pid)
            print(f"concurrent SSE streams: {opened} held by one process, RSS {rss:.0f} MiB")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if args.scaleout:
            await pg(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
