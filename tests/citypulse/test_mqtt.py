"""MQTT ingestion end to end against a real Mosquitto broker.

Each test uses its own topic prefix, so runs (and the two CI backends) never see each
other's messages. Readings are published with paho-mqtt and read back through the API."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest

from support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    ServerProcess,
    deleted_right_after,
    free_port,
    login,
)
from vpsapi.citypulse import service

BASE = "/api/v1/citypulse"
BROKER = ("127.0.0.1", 1883)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _broker_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), 1):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _broker_up(*BROKER), reason="needs Mosquitto on :1883")


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def publish(port: int, topic: str, payload: Any) -> None:
    """Publish one QoS-1 message and wait for the broker's acknowledgement."""
    publish_many(port, topic, [payload])


def publish_many(port: int, topic: str, payloads: list[Any]) -> None:
    """Publish QoS-1 messages in order on one connection, each acknowledged by the broker."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for payload in payloads:
            raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            client.publish(topic, raw, qos=1).wait_for_publish(10)
    finally:
        # Disconnect first: it wakes the network thread, which loop_stop() then joins at
        # once (the other way round waits out the thread's 1 s select).
        client.disconnect()
        client.loop_stop()


async def poll(check: Any, what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def readings(client: httpx.AsyncClient, headers: dict, sensor_id: str) -> list[dict]:
    response = await client.get(
        f"{BASE}/sensors/{sensor_id}/readings",
        params={"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    points: list[dict] = response.json()["data"]["points"]
    return points


def metric(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(f"{name}{{{label_text}}}" if labels else name) + r" ([0-9.e+]+)"
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


async def wait_subscribed(
    client: httpx.AsyncClient, headers: dict, port: int, topic: str, sensor_id: str
) -> int:
    """Publish one probe reading (fixed timestamp, so repeats are idempotent) until it is
    stored: from then on the subscription is live. Returns how many probes were published
    (some may still be on their way)."""
    probe = {"value": -1.0, "time": "2000-01-02T00:00:00Z"}
    published = 0

    async def stored() -> bool:
        nonlocal published
        publish(port, topic, probe)
        published += 1
        return any(p["value"] == -1.0 for p in await readings(client, headers, sensor_id))

    await poll(stored, "the subscriber to receive the probe")
    return published


@pytest.fixture
def prefix() -> str:
    return f"cptest-{uuid.uuid4().hex[:10]}"


async def _building_with_sensor(
    client: httpx.AsyncClient, headers: dict, kind: str = "co2", unit: str = "ppm"
) -> tuple[str, str]:
    building = await client.post(f"{BASE}/buildings", json={"name": "Rathaus"}, headers=headers)
    building_id = building.json()["data"]["id"]
    sensor = await client.post(
        f"{BASE}/buildings/{building_id}/sensors",
        json={"name": "Saal", "kind": kind, "unit": unit},
        headers=headers,
    )
    return building_id, sensor.json()["data"]["id"]


@pytest.fixture
async def mqtt_client(make_client: Any, prefix: str) -> tuple[httpx.AsyncClient, dict]:
    client = await make_client(
        mqtt_url=f"mqtt://{BROKER[0]}:{BROKER[1]}", citypulse_mqtt_topic_prefix=prefix
    )
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    return client, {"Authorization": f"Bearer {tokens['accessToken']}"}


async def test_payload_forms_alerts_and_metrics(mqtt_client: Any, prefix: str) -> None:
    client, headers = mqtt_client
    building_id, sensor_id = await _building_with_sensor(client, headers)
    topic = f"{prefix}/{building_id}/{sensor_id}"
    before = metric(
        (await client.get("/metrics")).text,
        "vpsapi_citypulse_readings_ingested_total",
        transport="mqtt",
    )
    # Every probe counts once it arrives, and the last ones may arrive late.
    probes = await wait_subscribed(client, headers, BROKER[1], topic, sensor_id)
    rule = await client.post(
        f"{BASE}/alerts/rules",
        json={"sensorId": sensor_id, "name": "Luft", "condition": "above", "threshold": 1000},
        headers=headers,
    )
    assert rule.status_code == 201, rule.text

    publish(BROKER[1], topic, {"value": 650, "time": _iso(T0)})
    publish(BROKER[1], topic, [{"value": 700, "timestamp": _iso(T0 + timedelta(minutes=1))}])
    publish(BROKER[1], topic, {"value": 720, "time": int((T0 + timedelta(minutes=2)).timestamp())})
    publish(BROKER[1], topic, 1500)  # bare number: stamped with the receive time

    async def all_stored() -> list[dict] | None:
        points = await readings(client, headers, sensor_id)
        return points if len(points) == 5 else None

    points = await poll(all_stored, "five readings")
    by_value = {p["value"]: p["timestamp"] for p in points}
    assert by_value[650] == _iso(T0)
    assert by_value[700] == _iso(T0 + timedelta(minutes=1))
    assert by_value[720] == _iso(T0 + timedelta(minutes=2))
    assert datetime.fromisoformat(by_value[1500]) > datetime.now(UTC) - timedelta(minutes=5)

    # The same service path as HTTP: the 1500 ppm reading opened an alert.
    async def alert_open() -> list[dict]:
        listed = await client.get(
            f"{BASE}/alerts", params={"building": building_id, "status": "open"}, headers=headers
        )
        return listed.json()["data"]

    opened = await poll(alert_open, "the alert")
    assert opened[0]["triggerValue"] == 1500

    async def counted() -> float | None:
        after = metric(
            (await client.get("/metrics")).text,
            "vpsapi_citypulse_readings_ingested_total",
            transport="mqtt",
        )
        return after if after - before >= probes + 4 else None

    assert await poll(counted, "the ingestion counter") - before == probes + 4


async def test_readings_without_a_time_that_arrive_together_are_all_kept(
    mqtt_client: Any, prefix: str
) -> None:
    client, headers = mqtt_client
    building_id, sensor_id = await _building_with_sensor(client, headers)
    topic = f"{prefix}/{building_id}/{sensor_id}"
    await wait_subscribed(client, headers, BROKER[1], topic, sensor_id)
    # One message with three untimed readings, then a burst of bare numbers on one
    # connection: they reach the ingestor within the same milliseconds.
    publish(BROKER[1], topic, [{"value": 1}, {"value": 2}, {"value": 3}])
    publish_many(BROKER[1], topic, [float(value) for value in range(4, 31)])

    async def all_stored() -> list[dict] | None:
        points = [p for p in await readings(client, headers, sensor_id) if p["value"] > 0]
        return points if len(points) >= 30 else None

    points = await poll(all_stored, "thirty readings")
    assert sorted(p["value"] for p in points) == [float(v) for v in range(1, 31)]
    # Compared as times: ISO text omits the fraction on a whole second and sorts wrongly.
    stamps = [
        datetime.fromisoformat(p["timestamp"]) for p in sorted(points, key=lambda p: p["value"])
    ]
    assert stamps == sorted(set(stamps)), "each reading has a time of its own, in arrival order"


async def test_bad_messages_are_counted_and_ingestion_continues(
    mqtt_client: Any, prefix: str
) -> None:
    client, headers = mqtt_client
    building_id, sensor_id = await _building_with_sensor(client, headers)
    other_building, _ = await _building_with_sensor(client, headers)
    topic = f"{prefix}/{building_id}/{sensor_id}"
    await wait_subscribed(client, headers, BROKER[1], topic, sensor_id)
    text = (await client.get("/metrics")).text
    name = "vpsapi_citypulse_mqtt_messages_total"
    before = {
        o: metric(text, name, outcome=o)
        for o in ("invalid_payload", "invalid_topic", "unknown_sensor")
    }

    bad = [
        (topic, b"not json"),
        (topic, b'{"value": "warm"}'),
        (topic, b'{"time": "2026-01-01T00:00:00Z"}'),
        (topic, b"[]"),
        (topic, b"true"),
        (topic, b'{"value": true}'),  # stored as 1.0 before
        (topic, b'{"value": 1e999}'),
        (topic, b"1e999"),
        (topic, b"NaN"),
        (topic, b'{"value": 1e308}'),
        (topic, b'{"value": 1, "time": "2100-01-01T00:00:00Z"}'),  # would stay "latest"
        (topic, b'{"value": 1, "time": "0001-01-01T00:00:00+05:00"}'),
        (topic, b'{"value": 1, "time": -1}'),  # before 1970
        (topic, b"[" * 1200),  # deeper than Python's json could parse: ended the subscriber
        (f"{prefix}/{building_id}", b"1"),
        (f"{prefix}/{building_id}/{sensor_id}/extra", b"1"),
        (f"{prefix}/{building_id}/{uuid.uuid4().hex}", b"1"),
        (f"{prefix}/{other_building}/{sensor_id}", b"1"),  # sensor of another building
    ]
    for bad_topic, payload in bad:
        publish(BROKER[1], bad_topic, payload)
    publish(BROKER[1], topic, {"value": 42.0, "time": _iso(T0)})

    async def good_stored() -> bool:
        return any(p["value"] == 42.0 for p in await readings(client, headers, sensor_id))

    await poll(good_stored, "the good reading after the bad ones")
    assert len(await readings(client, headers, sensor_id)) == 2  # probe + good reading
    text = (await client.get("/metrics")).text
    delta = {o: metric(text, name, outcome=o) - before[o] for o in before}
    assert delta == {"invalid_payload": 14, "invalid_topic": 2, "unknown_sensor": 2}


async def test_readings_of_a_sensor_deleted_meanwhile_count_as_an_unknown_sensor(
    mqtt_client: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sensor deleted by a concurrent request while its readings are stored: counted
    and logged as readings of an unknown sensor, not as a failure of the subscriber."""
    client, headers = mqtt_client
    building_id, sensor_id = await _building_with_sensor(client, headers)
    topic = f"{prefix}/{building_id}/{sensor_id}"
    await wait_subscribed(client, headers, BROKER[1], topic, sensor_id)
    name = "vpsapi_citypulse_mqtt_messages_total"

    async def counts() -> dict[str, float]:
        text = (await client.get("/metrics")).text
        return {o: metric(text, name, outcome=o) for o in ("unknown_sensor", "error")}

    before = await counts()
    deleted_right_after(
        monkeypatch, service, "get_sensor", "citypulse_sensors", lambda found: found.id
    )
    publish(BROKER[1], topic, {"value": 42.0, "time": _iso(T0)})

    async def counted() -> dict[str, float] | None:
        now = await counts()
        return now if now != before else None

    after = await poll(counted, "the message to be counted")
    assert {o: after[o] - before[o] for o in after} == {"unknown_sensor": 1, "error": 0}


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Any]:
    """A Mosquitto of our own on a free port, so the test can stop and restart it."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> int:
        process = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        processes.append(process)
        deadline = time.monotonic() + 10
        while not _broker_up("127.0.0.1", port):
            assert time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)
        return port

    def stop() -> None:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(10)

    if not Path(binary).exists():
        pytest.skip("mosquitto binary not installed")
    yield start, stop
    stop()


async def test_reconnects_after_the_broker_restarts(
    own_broker: Any, make_client: Any, prefix: str
) -> None:
    start, stop = own_broker
    port = start()
    client = await make_client(
        mqtt_url=f"mqtt://127.0.0.1:{port}", citypulse_mqtt_topic_prefix=prefix
    )
    headers = {
        "Authorization": f"Bearer {(await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))['accessToken']}"
    }
    building_id, sensor_id = await _building_with_sensor(client, headers)
    topic = f"{prefix}/{building_id}/{sensor_id}"
    await wait_subscribed(client, headers, port, topic, sensor_id)

    stop()
    start()

    async def stored_after_restart() -> bool:
        publish(port, topic, {"value": 7.0, "time": _iso(T0)})
        return any(p["value"] == 7.0 for p in await readings(client, headers, sensor_id))

    await poll(stored_after_restart, "ingestion after the broker came back", timeout=60)


@pytest.mark.multiprocess
async def test_shared_subscription_stores_each_message_once(
    server_factory: Any, settings_factory: Any, prefix: str
) -> None:
    settings = settings_factory()
    env = {"MQTT_URL": "mqtt://127.0.0.1:1883", "CITYPULSE_MQTT_TOPIC_PREFIX": prefix}
    servers = [server_factory(settings, **env), server_factory(settings, **env)]
    async with httpx.AsyncClient(base_url=servers[0].base_url) as client:
        tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
        headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
        building_id, sensor_id = await _building_with_sensor(client, headers, "electricity", "kW")
        topic = f"{prefix}/{building_id}/{sensor_id}"
        await wait_subscribed(client, headers, BROKER[1], topic, sensor_id)

        async def stored_per_process() -> list[float]:
            counts = []
            for server in servers:
                text = httpx.get(server.base_url + "/metrics").text
                counts.append(
                    metric(text, "vpsapi_citypulse_mqtt_messages_total", outcome="stored")
                )
            return counts

        # Both processes must be subscribed before counting: probe until each stored one.
        async def both_live() -> bool:
            publish(BROKER[1], topic, {"value": -1.0, "time": "2000-01-02T00:00:00Z"})
            return all(count > 0 for count in await stored_per_process())

        await poll(both_live, "both processes to receive messages")
        before = sum(await stored_per_process())
        # No timestamps: each delivery stores a new row, so a duplicate would show.
        for value in range(20):
            publish(BROKER[1], topic, value)

        async def twenty_more() -> bool:
            return sum(await stored_per_process()) >= before + 20

        await poll(twenty_more, "twenty deliveries")
        points = [p for p in await readings(client, headers, sensor_id) if p["value"] >= 0]
        assert sorted(p["value"] for p in points) == [float(v) for v in range(20)]
        assert sum(await stored_per_process()) == before + 20


@pytest.mark.multiprocess
async def test_no_subscriber_while_citypulse_is_turned_off(
    server_factory: Any, settings_factory: Any, prefix: str
) -> None:
    """A process with CITYPULSE_ENABLED=false took its share of the group's messages (and
    stored them) though its API answered 503: the other process saw only some of them."""
    settings = settings_factory()
    env = {"MQTT_URL": "mqtt://127.0.0.1:1883", "CITYPULSE_MQTT_TOPIC_PREFIX": prefix}
    off = server_factory(settings, **env, CITYPULSE_ENABLED="false")
    on = server_factory(settings, **env)
    async with httpx.AsyncClient(base_url=on.base_url) as client:
        tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
        headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
        building_id, sensor_id = await _building_with_sensor(client, headers)
        topic = f"{prefix}/{building_id}/{sensor_id}"
        await wait_subscribed(client, headers, BROKER[1], topic, sensor_id)

        def stored_by(server: ServerProcess) -> float:
            text = httpx.get(server.base_url + "/metrics").text
            return metric(text, "vpsapi_citypulse_mqtt_messages_total", outcome="stored")

        before = stored_by(on)
        for value in range(20):  # one group: the broker hands each to one subscriber
            publish(BROKER[1], topic, value)

        async def all_twenty() -> bool:
            return stored_by(on) >= before + 20

        await poll(all_twenty, "the enabled process to get every message")
    lines = httpx.get(off.base_url + "/metrics").text.splitlines()
    assert not any(line.startswith("vpsapi_citypulse_mqtt_messages_total{") for line in lines)
    assert "vpsapi_citypulse_mqtt_connected 0.0" in lines
    assert "mqtt_subscribed" not in off.log_path.read_text()
