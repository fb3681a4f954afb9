"""Monitoring benchmark: SQL-downsampled history over a full retention period, and the
nginx log tail against reading the whole file. Prints figures; asserts nothing.

    PYTHONPATH=src .venv/bin/python bench/ops_monitoring.py [--days 30] [--log-mb 256] [--pg]

History: `--days` of samples at the default 10 s interval (30 days = 259,200 rows) are
written through the ORM, then `service.history` is timed for one metric and for all
eleven, at a 1-hour step, on SQLite (and PostgreSQL with `--pg`).
Tail: the last 100 lines (and a grep for a rare string) of a `--log-mb` access log with
`tail_lines`, against `readlines()[-100:]` on the same file.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy import insert

from vpsapi.config import Settings
from vpsapi.core.db import Database
from vpsapi.ops.monitoring import service
from vpsapi.ops.monitoring.models import METRICS, MetricSample
from vpsapi.ops.system.service import tail_lines

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
INTERVAL_MS = 10_000


def timed(runs: int, work: object) -> float:
    """Median milliseconds of `runs` calls of `work` (sync)."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        work()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def history_figures(settings: Settings, days: int, label: str) -> None:
    database = Database(settings)
    try:
        await database.migrate()
        end = datetime.now(UTC).replace(microsecond=0)
        start = end - timedelta(days=days)
        start_ms = int(start.timestamp() * 1000)
        count = days * 86400 * 1000 // INTERVAL_MS
        rows = [
            {"timestamp_ms": start_ms + i * INTERVAL_MS}
            | {name: random.uniform(0, 100) for name in METRICS}
            for i in range(count)
        ]
        async with database.session() as session:
            for offset in range(0, count, 10_000):
                await session.execute(insert(MetricSample), rows[offset : offset + 10_000])
        for metric in ("cpu_usage", None):
            durations = []
            points = []
            for _ in range(5):
                started = time.perf_counter()
                async with database.session() as session:
                    points = await service.history(session, metric, start, end, 3600)
                durations.append((time.perf_counter() - started) * 1000)
            print(
                f"{label}: history of {count:,} samples, step 1 h, "
                f"{'one metric' if metric else 'all metrics'}: {len(points)} points, "
                f"median {statistics.median(durations):.1f} ms"
            )
    finally:
        await database.dispose()


async def pg_history(days: int) -> None:
    dbname = f"vpsapi_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            environment="test",
            database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{dbname}",
        )
        await history_figures(settings, days, "PostgreSQL")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await admin.close()


def tail_figures(directory: Path, megabytes: int) -> None:
    path = directory / "access.log"
    line = '127.0.0.1 - - [30/Nov/2026:08:00:00 +0000] "GET /api/x HTTP/1.1" 200 512 "-" "curl"\n'
    with path.open("w") as handle:
        block = line * 10_000
        for _ in range(megabytes * 1024 * 1024 // len(block)):
            handle.write(block)
        handle.write(line.replace("/api/x", "/rare"))
        handle.write(block)

    def naive() -> list[str]:
        with path.open() as handle:
            return handle.readlines()[-100:]

    ours = timed(5, lambda: tail_lines(path, 100, None))
    whole = timed(3, naive)
    rare = timed(5, lambda: tail_lines(path, 100, "/rare"))
    print(
        f"tail of a {megabytes} MiB log, last 100 lines: tail_lines {ours:.2f} ms, "
        f"readlines {whole:.0f} ms (x{whole / ours:.0f}); grep for a line 10,000 lines "
        f"from the end: {rare:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--log-mb", type=int, default=256)
    parser.add_argument("--pg", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vpsapi-bench-") as tmp:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, environment="test", data_dir=Path(tmp) / "data"
        )
        asyncio.run(history_figures(settings, args.days, "SQLite"))
        if args.pg:
            asyncio.run(pg_history(args.days))
        tail_figures(Path(tmp), args.log_mb)


if __name__ == "__main__":
    main()
