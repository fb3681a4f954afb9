"""Start real `vpsapi` processes for benchmarks (loopback only, stopped at exit)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from support import free_port  # noqa: E402  (ports below the kernel's range for outgoing ones)

API_KEY = "bench-shared-api-key-0123456789"
ADMIN_PASSWORD = "bench-admin-password"


def bench_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": str(ROOT / "src"),
            "DATA_DIR": str(data_dir),
            "API_KEY": API_KEY,
            "ADMIN_PASSWORD": ADMIN_PASSWORD,
            "JWT_SECRET": "bench-jwt-secret-0123456789-abcdefghijklmn",
            "RATE_LIMIT_ENABLED": "false",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
        }
    )
    env.update(extra)
    return env


@contextmanager
def processes(
    commands: list[list[str]], env: dict[str, str]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "vpsapi", *cmd],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for cmd in commands
    ]
    try:
        yield started
    finally:
        for proc in started:
            proc.terminate()
        for proc in started:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def server(workers: int = 1, **extra: str) -> Iterator[str]:
    """A `vpsapi serve` on a free port; yields its base URL."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = bench_env(Path(tmp) / "data", **extra)
        with processes([["serve", "--port", str(port), "--workers", str(workers)]], env):
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    if httpx.get(base + "/health/live", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            yield base


def token(base: str) -> str:
    return str(httpx.post(base + "/api/auth/token", headers={"X-API-Key": API_KEY}).json()["token"])


def login(base: str) -> str:
    response = httpx.post(
        base + "/api/v1/auth/login",
        json={"email": "admin@example.com", "password": ADMIN_PASSWORD},
        timeout=30,
    )
    return str(response.json()["data"]["accessToken"])


PG_SERVER = "postgresql://postgres@127.0.0.1:5432"


async def pg(sql: str) -> None:
    """Run one statement on the machine's PostgreSQL (create/drop bench databases)."""
    await pg_value(sql)


async def pg_value(sql: str, database: str = "postgres") -> Any:
    """The first value a statement on the machine's PostgreSQL returns (None if none)."""
    import asyncpg

    conn = await asyncpg.connect(f"{PG_SERVER}/{database}")
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A `vpsapi` subprocess logging to `log` (stop it by PID)."""
    return subprocess.Popen(
        [sys.executable, "-m", "vpsapi", *args],
        env=env,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        cwd=str(log.parent),
    )


def wait_live(base: str, proc: subprocess.Popen[bytes] | None = None, verify: bool = True) -> None:
    for _ in range(300):
        if proc is not None and proc.poll() is not None:
            raise SystemExit("server exited; see its log")
        try:
            if httpx.get(base + "/health/live", timeout=1, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{base} did not start")


REDIS_URL = "redis://127.0.0.1:6379/0"


class ScaleoutSetup(NamedTuple):
    directory: Path
    env: dict[str, str]  # for `vpsapi` processes: the database, Redis, no workers in serve
    database: str


@contextmanager
def scaleout_setup(name: str, **extra: str) -> Iterator[ScaleoutSetup]:
    """A fresh, migrated database on the machine's PostgreSQL, a Redis key prefix of its own
    and a temporary directory. The database and the prefix's keys are removed at exit (jobs
    left queued keep their keys forever, and every later SCAN of the machine's Redis, the
    tests' cleanup among them, would wade through them): stop the processes first."""
    database = f"vpsapi_{name}_{uuid.uuid4().hex[:8]}"
    prefix = f"{name}-{uuid.uuid4().hex[:8]}"
    asyncio.run(pg(f'CREATE DATABASE "{database}"'))
    try:
        with tempfile.TemporaryDirectory() as directory_name:
            directory = Path(directory_name)
            env = bench_env(
                directory / "data",
                DATABASE_URL=f"{PG_SERVER}/{database}",
                REDIS_URL=REDIS_URL,
                REDIS_PREFIX=prefix,
                JOBS_INPROCESS_WORKERS="false",
                **extra,
            )
            start(["migrate"], env, directory / "migrate.log").wait(120)
            env["AUTO_MIGRATE"] = "false"
            yield ScaleoutSetup(directory, env, database)
    finally:
        asyncio.run(pg(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        asyncio.run(delete_redis_keys(f"*{prefix}*"))


async def delete_redis_keys(pattern: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    try:
        async for key in client.scan_iter(match=pattern, count=1000):
            await client.delete(key)
    finally:
        await client.aclose()
