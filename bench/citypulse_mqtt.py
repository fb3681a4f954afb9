"""CityPulse MQTT ingestion rate into PostgreSQL through the local Mosquitto.

Runs the real subscriber (`MqttIngestor`, the code a serve process runs) on a throwaway
database, publishes QoS-1 messages with paho-mqtt as fast as the broker takes them, and
times from the first publish until every reading is stored. Prints figures; asserts nothing.

    PYTHONPATH=src .venv/bin/python bench/citypulse_mqtt.py [--messages 2000] [--per-message 1 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import paho.mqtt.client as paho
from sqlalchemy import func, select

from vpsapi.citypulse import service
from vpsapi.citypulse.cache import AnalyticsCache
from vpsapi.citypulse.models import Reading
from vpsapi.citypulse.mqtt import MqttIngestor
from vpsapi.citypulse.runtime import CityPulseRuntime
from vpsapi.citypulse.schemas import BuildingIn, SensorIn
from vpsapi.config import Settings
from vpsapi.core.db import Database

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
START = datetime(2025, 1, 1, tzinfo=UTC)


def publish_all(topic: str, payloads: list[bytes]) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=1) for payload in payloads]
    for info in infos:
        info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()


async def stored(database: Database) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Reading)) or 0)


async def run(messages: int, sizes: list[int]) -> None:
    dbname = f"vpsapi_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{dbname}"')
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment="test",
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{dbname}",
        mqtt_url="mqtt://127.0.0.1:1883",
        citypulse_mqtt_topic_prefix=prefix,
    )
    database = Database(settings)
    subscriber: asyncio.Task[None] | None = None
    try:
        await database.migrate()
        async with database.session() as session:
            building = await service.create_building(session, BuildingIn(name="Bench"), "bench")
            sensor = await service.create_sensor(
                session, building.id, SensorIn(name="m", kind="electricity", unit="kW")
            )
        topic = f"{prefix}/{building.id}/{sensor.id}"
        ingestor = MqttIngestor(settings, database, CityPulseRuntime(AnalyticsCache(0)))
        subscriber = asyncio.create_task(ingestor.run())
        # Wait until the subscription is live: a probe reading must arrive.
        probe = json.dumps({"value": 0, "time": "2000-01-01T00:00:00Z"}).encode()
        while await stored(database) == 0:
            await asyncio.to_thread(publish_all, topic, [probe])
            await asyncio.sleep(0.2)

        moment = 0
        for size in sizes:
            payloads = []
            for _ in range(messages):
                batch = [
                    {
                        "value": 10 + moment % 7,
                        "time": (START + timedelta(seconds=moment + i)).isoformat(),
                    }
                    for i in range(size)
                ]
                moment += size
                payloads.append(json.dumps(batch if size > 1 else batch[0]).encode())
            expected = await stored(database) + messages * size
            began = time.perf_counter()
            await asyncio.to_thread(publish_all, topic, payloads)
            count, last_change = await stored(database), time.perf_counter()
            while count < expected:
                await asyncio.sleep(0.05)
                now_count = await stored(database)
                if now_count != count:
                    count, last_change = now_count, time.perf_counter()
                elif time.perf_counter() - last_change > 30:
                    raise SystemExit(f"stalled: {count} of {expected} readings stored")
            elapsed = time.perf_counter() - began
            print(
                f"{messages} messages x {size} reading(s): {elapsed:.2f} s, "
                f"{messages / elapsed:,.0f} messages/s, {messages * size / elapsed:,.0f} readings/s"
            )
    finally:
        if subscriber is not None:
            subscriber.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await subscriber
        await database.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--per-message", type=int, nargs="+", default=[1, 100])
    args = parser.parse_args()
    asyncio.run(run(args.messages, args.per_message))


if __name__ == "__main__":
    main()
