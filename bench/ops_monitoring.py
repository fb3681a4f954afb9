"""Monitoring benchmark: SQL-downsampled history over a full retention period.
Prints figures; asserts nothing.

    PYTHONPATH=src .venv/bin/python bench/ops_monitoring.py [--days 30] [--pg]

History: `--days` of samples at the default 10 s interval (30 days = 259,200 rows) are
written through the ORM, then `service.history` is timed for one metric and for all
eleven, at a 1-hour step, on SQLite (and PostgreSQL with `--pg`).
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

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
INTERVAL_MS = 10_000


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--pg", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vpsapi-bench-") as tmp:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, environment="test", data_dir=Path(tmp) / "data"
        )
        asyncio.run(history_figures(settings, args.days, "SQLite"))
        if args.pg:
            asyncio.run(pg_history(args.days))


if __name__ == "__main__":
    main()
