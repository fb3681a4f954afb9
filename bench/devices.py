"""Devices bench: seed-003 registrations/s and /api/hello/query req/s over 1,000 devices.

In-process (httpx ASGI transport, lifespan included) on the embedded default (SQLite in a
temporary DATA_DIR), or on PostgreSQL with `--database-url`. Rate limiting is off.

    PYTHONPATH=src /work/main/.venv/bin/python bench/devices.py [--devices 1000] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from pathlib import Path

import httpx

from vpsapi.app import create_app
from vpsapi.config import Settings


async def run(devices: int, concurrency: int, database_url: str) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            data_dir=Path(data_dir), database_url=database_url, rate_limit_enabled=False
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                gate = asyncio.Semaphore(concurrency)
                users = [f"bench{secrets.token_hex(6)}" for _ in range(devices)]

                async def register(user: str) -> None:
                    body = {"realDeviceId": "REAL" + secrets.token_hex(8).upper(), "userId": user}
                    async with gate:
                        response = await client.post("/api/hello/register", json=body)
                    response.raise_for_status()

                async def query(user: str) -> None:
                    async with gate:
                        response = await client.post(
                            "/api/hello/query", json={"key": f"{user}_binding"}
                        )
                    response.raise_for_status()

                started = time.perf_counter()
                await asyncio.gather(*(register(u) for u in users))
                elapsed = time.perf_counter() - started
                print(f"registrations: {devices} in {elapsed:.2f}s = {devices / elapsed:.0f}/s")

                started = time.perf_counter()
                await asyncio.gather(*(query(u) for u in users * 3))
                elapsed = time.perf_counter() - started
                total = devices * 3
                print(f"hello/query: {total} in {elapsed:.2f}s = {total / elapsed:.0f} req/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    asyncio.run(run(args.devices, args.concurrency, args.database_url))


if __name__ == "__main__":
    main()
