"""CityPulse benchmark: batch ingestion rate and aggregate latency on PostgreSQL.

Creates a throwaway database, ingests 15-minute readings for a few electricity meters in
batches of 10,000 through the service layer (the code path of POST .../readings), then the
same amount as JSON through HTTP to a real `vpsapi serve` process (two clients at once),
then times downsampled range queries and energy reports. Prints figures; asserts nothing.

    PYTHONPATH=src /work/main/.venv/bin/python bench/citypulse.py [--sensors 4] [--days 365]
    PYTHONPATH=src .venv/bin/python bench/citypulse.py --filler-readings 35000000

`--filler-readings N` first fills the table with N readings of other buildings' meters
(one year of 15-minute data each, generated in SQL), so the aggregates are timed on a
table of realistic size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from common import bench_env, free_port, login, start, wait_live

from vpsapi.citypulse import energy, service
from vpsapi.citypulse.schemas import BuildingIn, ReadingIn, SensorIn
from vpsapi.config import Settings
from vpsapi.core.db import Database

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
START = datetime(2025, 1, 1, tzinfo=UTC)


async def fill(database: Database, dsn: str, readings: int, days: int) -> None:
    """Other meters' readings, inserted by PostgreSQL itself (generate_series)."""
    per_sensor = days * 96
    meters = max(1, -(-readings // per_sensor))
    async with database.session() as session:
        filler = await service.create_building(session, BuildingIn(name="Filler"), "bench")
        for index in range(meters):
            await service.create_sensor(
                session, filler.id, SensorIn(name=f"f{index}", kind="electricity", unit="kW")
            )
        await session.commit()
    began = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO citypulse_readings (sensor_id, ts_ms, value) "
            "SELECT s.id, $2::bigint + g::bigint * 900000, 5 + random() * 10 "
            "FROM citypulse_sensors s CROSS JOIN generate_series(0, $3 - 1) AS g "
            "WHERE s.building_id = $1",
            filler.id,
            int(START.timestamp() * 1000),
            per_sensor,
        )
        await conn.execute("ANALYZE citypulse_readings")
        total = await conn.fetchval("SELECT count(*) FROM citypulse_readings")
    finally:
        await conn.close()
    print(f"filled {total:,} readings ({meters} meters) in {time.perf_counter() - began:.0f} s")


async def create_meters(database: Database, name: str, meters: int) -> tuple[str, list[str]]:
    """A building with `meters` electricity meters: (building id, sensor ids)."""
    async with database.session() as session:
        building = await service.create_building(
            session, BuildingIn(name=name, floor_area_m2=5000), "bench"
        )
        sensor_ids = [
            (
                await service.create_sensor(
                    session, building.id, SensorIn(name=f"m{i}", kind="electricity", unit="kW")
                )
            ).id
            for i in range(meters)
        ]
    return building.id, sensor_ids


async def run(sensors: int, days: int, batch: int, filler: int) -> None:
    dbname = f"vpsapi_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{dbname}"')
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment="test",
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{dbname}",
    )
    database = Database(settings)
    try:
        await database.migrate()
        building_id, sensor_ids = await create_meters(database, "Bench", sensors)
        if filler:
            await fill(database, f"postgresql://postgres@127.0.0.1:5432/{dbname}", filler, days)
        per_sensor = days * 96
        total = 0
        began = time.perf_counter()
        for sensor_id in sensor_ids:
            for offset in range(0, per_sensor, batch):
                readings = [
                    ReadingIn(timestamp=START + timedelta(minutes=15 * i), value=10 + (i % 96) / 4)
                    for i in range(offset, min(offset + batch, per_sensor))
                ]
                async with database.session() as session:
                    total += await service.ingest_readings(session, sensor_id, readings)
                    await session.commit()
        elapsed = time.perf_counter() - began
        print(
            f"ingested {total} readings in {elapsed:.2f} s: {total / elapsed:,.0f} readings/s "
            f"(batches of {batch}, {sensors} sensors x {days} days of 15-min data)"
        )

        await http_ingest(database, dbname, sensors, days, batch)

        end = START + timedelta(days=days)
        cases = {
            "readings step=1h one sensor, 30 days": lambda s: service.query_readings(
                s,
                sensor_ids[0],
                start=end - timedelta(days=30),
                end=end,
                step="1h",
                aggregate="avg",
                limit=100_000,
            ),
            "readings step=1d one sensor, whole range": lambda s: service.query_readings(
                s, sensor_ids[0], start=START, end=end, step="1d", aggregate="max", limit=100_000
            ),
            "energy step=1d building, whole range": lambda s: energy.energy_report(
                s, building_id, start=START, end=end, step="1d", tariff=0.3, currency="EUR"
            ),
            "energy step=1h building, whole range": lambda s: energy.energy_report(
                s, building_id, start=START, end=end, step="1h", tariff=0.3, currency="EUR"
            ),
            "energy step=1h building, 30 days": lambda s: energy.energy_report(
                s,
                building_id,
                start=end - timedelta(days=30),
                end=end,
                step="1h",
                tariff=0.3,
                currency="EUR",
            ),
        }
        for name, query in cases.items():
            timings = []
            for _ in range(7):
                async with database.session() as session:
                    t0 = time.perf_counter()
                    await query(session)
                    timings.append((time.perf_counter() - t0) * 1000)
            print(
                f"{name}: median {statistics.median(timings):.1f} ms, "
                f"max {max(timings):.1f} ms (7 runs)"
            )
    finally:
        await database.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await admin.close()


async def http_ingest(database: Database, dbname: str, sensors: int, days: int, batch: int) -> None:
    """POST the same readings for as many new meters (of another building, so the timed
    aggregates below stay the same) as JSON batches to one `vpsapi serve`: what an API
    client sees, request parsing included (bodies are built beforehand)."""
    _, sensor_ids = await create_meters(database, "Bench HTTP", sensors)
    per_sensor = days * 96
    bodies = [
        (
            sensor_id,
            json.dumps(
                {
                    "readings": [
                        {
                            "timestamp": (START + timedelta(minutes=15 * i)).isoformat(),
                            "value": 10 + (i % 96) / 4,
                        }
                        for i in range(offset, min(offset + batch, per_sensor))
                    ]
                }
            ).encode(),
        )
        for sensor_id in sensor_ids
        for offset in range(0, per_sensor, batch)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        env = bench_env(
            Path(tmp) / "data", DATABASE_URL=f"postgresql://postgres@127.0.0.1:5432/{dbname}"
        )
        port = free_port()
        server = start(["serve", "--port", str(port)], env, Path(tmp) / "serve.log")
        try:
            base = f"http://127.0.0.1:{port}"
            wait_live(base, server)
            headers = {"Authorization": f"Bearer {login(base)}", "Content-Type": "application/json"}
            total = 0
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as http:

                async def post_batches() -> None:
                    nonlocal total
                    while bodies:
                        sensor_id, body = bodies.pop()
                        response = await http.post(
                            f"/api/v1/citypulse/sensors/{sensor_id}/readings", content=body
                        )
                        response.raise_for_status()
                        total += response.json()["data"]["accepted"]

                began = time.perf_counter()
                await asyncio.gather(post_batches(), post_batches())
                elapsed = time.perf_counter() - began
        finally:
            server.terminate()
            server.wait(30)
    print(
        f"HTTP: ingested {total} readings in {elapsed:.2f} s: {total / elapsed:,.0f} readings/s "
        f"(POST batches of {batch} as JSON, 2 clients, 1 serve process)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sensors", type=int, default=4)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--filler-readings", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(run(args.sensors, args.days, args.batch, args.filler_readings))


if __name__ == "__main__":
    main()
