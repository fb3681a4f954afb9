"""Cost of the log stream files: request overhead, and reading back a large file.

    python bench/logs.py [--requests 3000] [--file-mb 64]

1. The same app serves `GET /health/live` in-process (httpx ASGI transport, no
   network) with LOG_TO_FILES on and off; the ratio is the cost of writing the
   performance line (plus the application line at INFO).
2. A performance.log of `--file-mb` MiB is written, then pages are read through the
   service the endpoints use: the newest page, and a filter that matches nothing
   (examines the whole per-request scan budget). Peak memory is reported as the
   growth of the process's max RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path

import httpx

from vpsapi.app import create_app
from vpsapi.config import Settings
from vpsapi.ops.logs import reader, service
from vpsapi.ops.logs.schemas import LogQuery


async def requests_per_second(data_dir: Path, to_files: bool, count: int) -> float:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        data_dir=data_dir,
        rate_limit_enabled=False,
        log_level="INFO",
        log_format="json",
        log_to_files=to_files,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(200):  # warm up
                await client.get("/health/live")
            started = time.perf_counter()
            for _ in range(count):
                await client.get("/health/live")
            return count / (time.perf_counter() - started)


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_big_file(path: Path, megabytes: int) -> int:
    line = {
        "method": "GET",
        "path": "/api/v1/me",
        "status": 200,
        "duration_ms": 3.2,
        "ip": "203.0.113.9",
        "user_id": "0123456789abcdef0123456789abcdef",
        "event": "request",
        "request_id": "req_0123456789abcdef0123456789abcdef",
        "level": "info",
        "logger": "vpsapi.access",
        "timestamp": "2026-11-30T08:00:00.000000Z",
    }
    encoded = (json.dumps(line) + "\n").encode()
    block = encoded * 4096
    written = 0
    with open(path, "wb") as handle:
        while written < megabytes * 1024 * 1024:
            handle.write(block)
            written += len(block)
    return written


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--file-mb", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        # Alternate to spread machine noise over both modes.
        off, on = [], []
        for round_ in range(2):
            off.append(
                asyncio.run(requests_per_second(base / f"off{round_}", False, args.requests))
            )
            on.append(asyncio.run(requests_per_second(base / f"on{round_}", True, args.requests)))
        print(f"GET /health/live in-process, {args.requests} requests x 2 rounds, LOG_LEVEL=INFO")
        print(f"  LOG_TO_FILES=false: {max(off):8.0f} req/s")
        print(f"  LOG_TO_FILES=true : {max(on):8.0f} req/s  (ratio {max(on) / max(off):.2f})")

        log_dir = base / "read"
        log_dir.mkdir()
        size = write_big_file(log_dir / "performance.log", args.file_mb)
        rss_before = max_rss_mib()
        started = time.perf_counter()
        page = service.read_stream(log_dir, "performance", LogQuery(limit=1000))
        newest = time.perf_counter() - started
        started = time.perf_counter()
        empty = service.read_stream(log_dir, "performance", LogQuery(q="no-such-text", limit=100))
        scan = time.perf_counter() - started
        print(f"\nperformance.log of {size / 2**20:.0f} MiB:")
        print(f"  newest 1000 entries: {newest * 1000:7.1f} ms ({len(page.entries)} entries)")
        print(
            f"  no-match filter, {reader.SCAN_BUDGET_BYTES // 2**20} MiB budget: {scan * 1000:7.1f} ms"
            f" (entries {len(empty.entries)}, next_cursor {'set' if empty.next_cursor else 'null'})"
        )
        print(f"  max RSS growth while reading: {max_rss_mib() - rss_before:.1f} MiB")


if __name__ == "__main__":
    main()
