"""CITYPULSE_READINGS_RETENTION_DAYS: a periodic task deletes readings past the limit."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from support import ADMIN_EMAIL, ADMIN_PASSWORD, login

BASE = "/api/v1/citypulse"


def _counter(text: str, sample: str) -> float:
    match = re.search(re.escape(sample) + r" ([0-9.e+]+)", text)
    return float(match.group(1)) if match else 0.0


async def _readings_url(client: Any) -> tuple[str, dict[str, str]]:
    """A new sensor's readings URL, and the admin's headers."""
    token = (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))["accessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    building = await client.post(f"{BASE}/buildings", json={"name": "Archiv"}, headers=headers)
    sensor = await client.post(
        f"{BASE}/buildings/{building.json()['data']['id']}/sensors",
        json={"name": "Keller", "kind": "humidity", "unit": "%"},
        headers=headers,
    )
    return f"{BASE}/sensors/{sensor.json()['data']['id']}/readings", headers


async def test_old_readings_are_purged_and_counted(make_client: Any) -> None:
    client = await make_client(
        citypulse_readings_retention_days=30, citypulse_retention_interval_seconds=1
    )
    url, headers = await _readings_url(client)
    metrics = (await client.get("/metrics")).text
    purged_before = _counter(metrics, "vpsapi_citypulse_readings_purged_total")
    http_before = _counter(metrics, 'vpsapi_citypulse_readings_ingested_total{transport="http"}')

    now = datetime.now(UTC).replace(microsecond=0)
    ages = [timedelta(days=400), timedelta(days=31), timedelta(days=29), timedelta(hours=1)]
    body = {"readings": [{"timestamp": (now - a).isoformat(), "value": 50.0} for a in ages]}
    assert (await client.post(url, json=body, headers=headers)).status_code == 201
    metrics = (await client.get("/metrics")).text
    assert _counter(metrics, 'vpsapi_citypulse_readings_ingested_total{transport="http"}') == (
        http_before + 4
    )

    window = {"from": (now - timedelta(days=500)).isoformat(), "to": now.isoformat()}
    deadline = time.monotonic() + 30
    while True:
        points = (await client.get(url, params=window, headers=headers)).json()["data"]["points"]
        if len(points) == 2:
            break
        assert time.monotonic() < deadline, f"old readings still there: {points}"
        await asyncio.sleep(0.2)
    kept = [datetime.fromisoformat(p["timestamp"]) for p in points]
    assert kept == [now - timedelta(days=29), now - timedelta(hours=1)]
    # The purge commits a day of data at a time and counts each slice after its commit:
    # the readings can be gone a moment before the counter moves.
    while True:
        metrics = (await client.get("/metrics")).text
        purged = _counter(metrics, "vpsapi_citypulse_readings_purged_total") - purged_before
        if purged >= 2:
            break
        assert time.monotonic() < deadline, "the purge was never counted"
        await asyncio.sleep(0.2)
    assert purged == 2


async def test_no_retention_runs_while_citypulse_is_turned_off(make_client: Any) -> None:
    """CITYPULSE_ENABLED=false turns the module's background work off with its routes."""
    client = await make_client(
        citypulse_enabled=False,
        citypulse_readings_retention_days=30,
        citypulse_retention_interval_seconds=1,
        mqtt_url="mqtt://127.0.0.1:1",  # nothing listens: a subscriber would only retry
    )
    running = {task.get_name() for task in asyncio.all_tasks()}
    assert not running & {"citypulse-retention", "citypulse-mqtt"}
    # Turned on only now, after the start: the API can write, and no purge comes.
    client.app.state.settings.citypulse_enabled = True  # type: ignore[attr-defined]
    url, headers = await _readings_url(client)
    now = datetime.now(UTC).replace(microsecond=0)
    body = {"readings": [{"timestamp": (now - timedelta(days=400)).isoformat(), "value": 1.0}]}
    assert (await client.post(url, json=body, headers=headers)).status_code == 201
    await asyncio.sleep(2.5)  # two rounds of a retention task, had one started
    window = {"from": (now - timedelta(days=500)).isoformat(), "to": now.isoformat()}
    points = (await client.get(url, params=window, headers=headers)).json()["data"]["points"]
    assert len(points) == 1
