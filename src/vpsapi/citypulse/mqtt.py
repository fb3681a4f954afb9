"""MQTT ingestion: devices publish readings to `<prefix>/<buildingId>/<sensorId>`.

Payloads: a bare number, `{"value": 21.5, "time": "2026-01-01T00:00:00Z"}` (`time` or
`timestamp`, ISO-8601 or epoch seconds/milliseconds; the receive time when absent, one
millisecond apart for messages that arrive together so none overwrites another), or a
JSON list of such objects. Every message goes through `ingest.record_readings`, the same
path as `POST /sensors/{id}/readings`, so alerts, metrics and real-time events are identical.

Every serve process subscribes through one MQTT v5 shared subscription
(`$share/<group>/<prefix>/#`), so the broker hands each message to exactly one of them.
A bad message is logged and counted, never fatal; a lost broker is retried with backoff."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import aiomqtt
import structlog
from pydantic import AliasChoices, Field, TypeAdapter

from vpsapi.citypulse import ingest, service
from vpsapi.citypulse.metrics import MQTT_CONNECTED, MQTT_MESSAGES
from vpsapi.citypulse.runtime import CityPulseRuntime
from vpsapi.citypulse.schemas import ReadingIn, ReadingTime, ReadingValue
from vpsapi.config import Settings
from vpsapi.core.db import Database
from vpsapi.core.errors import NotFound
from vpsapi.core.schemas import CamelModel

log = structlog.get_logger("vpsapi.citypulse.mqtt")

MAX_READINGS_PER_MESSAGE = 10_000
MAX_MESSAGES_PER_BATCH = 500
MAX_BATCH_BYTES = 4 * 1024 * 1024
BACKOFF_START, BACKOFF_MAX = 0.5, 30.0


class MqttReading(CamelModel):
    value: ReadingValue
    # Bounded as over HTTP: 1970 to a few minutes ahead.
    time: ReadingTime | None = Field(
        default=None, validation_alias=AliasChoices("time", "timestamp")
    )


_PAYLOAD = TypeAdapter(
    ReadingValue | MqttReading | list[MqttReading]  # bare number, one object, or a list
)


@dataclass
class SensorBatch:
    """One sensor's readings among messages that arrived together."""

    timed: list[ReadingIn] = field(default_factory=list)
    received: list[ReadingIn] = field(default_factory=list)  # stamped with receive times
    topics: list[str] = field(default_factory=list)


class BadMessage(ValueError):
    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome


def parse_payload(payload: bytes) -> list[MqttReading]:
    # pydantic's own parser: json.loads recurses until Python's stack gives out (1,200 `[`
    # raised RecursionError, which ended the subscriber) where this one stops at a depth.
    try:  # a boolean is no reading: ReadingValue refuses it
        parsed = _PAYLOAD.validate_json(payload)
    except ValueError as exc:  # bad JSON, or no reading (a ValidationError is a ValueError)
        raise BadMessage("invalid_payload", str(exc).splitlines()[0]) from exc
    if isinstance(parsed, float):
        return [MqttReading(value=parsed)]
    items = parsed if isinstance(parsed, list) else [parsed]
    if not items or len(items) > MAX_READINGS_PER_MESSAGE:
        raise BadMessage(
            "invalid_payload", f"a message carries 1 to {MAX_READINGS_PER_MESSAGE} readings"
        )
    return items


def subscription_topic(settings: Settings) -> str:
    topic = f"{settings.citypulse_mqtt_topic_prefix.strip('/')}/#"
    group = settings.citypulse_mqtt_shared_group
    return f"$share/{group}/{topic}" if group else topic


class MqttIngestor:
    def __init__(self, settings: Settings, db: Database, runtime: CityPulseRuntime) -> None:
        self.settings = settings
        self.db = db
        self.runtime = runtime
        self.prefix = settings.citypulse_mqtt_topic_prefix.strip("/").split("/")
        self.topic = subscription_topic(settings)
        self._last_stamp_ms = 0

    def _client(self) -> aiomqtt.Client:
        url = urlsplit(self.settings.mqtt_url)
        secure = url.scheme == "mqtts"
        return aiomqtt.Client(
            hostname=url.hostname or "127.0.0.1",
            port=url.port or (8883 if secure else 1883),
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            # Unique per subscriber: a broker disconnects the older of two equal client ids.
            identifier=f"vpsapi-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}",
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=ssl.create_default_context() if secure else None,
            keepalive=30,
        )

    async def run(self) -> None:
        """Subscribe and ingest until cancelled, reconnecting with backoff."""
        backoff = BACKOFF_START
        while True:
            try:
                async with self._client() as client:
                    await client.subscribe(self.topic, qos=1)
                    MQTT_CONNECTED.set(1)
                    log.info("mqtt_subscribed", topic=self.topic)
                    backoff = BACKOFF_START
                    async for message in client.messages:
                        # Take whatever else has already arrived, up to a bound, so a burst
                        # of small messages costs one transaction per sensor, not per message.
                        batch = [message]
                        size = len(message.payload or b"")
                        while (
                            len(client.messages)
                            and len(batch) < MAX_MESSAGES_PER_BATCH
                            and size < MAX_BATCH_BYTES
                        ):
                            batch.append(await anext(client.messages))
                            size += len(batch[-1].payload or b"")
                        await self.handle([(m.topic.value, bytes(m.payload or b"")) for m in batch])
            except aiomqtt.MqttError as exc:
                log.warning("mqtt_disconnected", error=str(exc), retry_in=backoff)
            finally:
                MQTT_CONNECTED.set(0)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def handle(self, messages: list[tuple[str, bytes]]) -> None:
        """Store the readings of (topic, payload) messages, one transaction per sensor (as one
        HTTP batch would be); bad messages are logged and counted, the rest still stored."""
        parsed: list[tuple[tuple[str, str], str, list[MqttReading]]] = []
        for topic, payload in messages:
            try:
                parsed.append((self._route(topic), topic, parse_payload(payload)))
            except BadMessage as exc:
                self._reject(topic, exc)
        untimed = sum(1 for _, _, items in parsed for item in items if item.time is None)
        stamps = iter(self._receive_stamps(untimed))
        by_sensor: dict[tuple[str, str], SensorBatch] = {}
        for route, topic, items in parsed:
            batch = by_sensor.setdefault(route, SensorBatch())
            for item in items:
                if item.time is None:
                    batch.received.append(ReadingIn(timestamp=next(stamps), value=item.value))
                else:
                    batch.timed.append(ReadingIn(timestamp=item.time, value=item.value))
            batch.topics.append(topic)
        for (building_id, sensor_id), batch in by_sensor.items():
            topics = batch.topics
            try:
                async with self.db.session() as session:
                    try:
                        sensor = await service.get_sensor(session, sensor_id)
                        if sensor.building_id != building_id:
                            raise service.sensor_not_found()
                        await ingest.record_readings(
                            session,
                            self.runtime,
                            sensor_id,
                            batch.timed,
                            transport="mqtt",
                            received=batch.received,
                        )
                    except NotFound:  # unknown, or deleted while its readings were stored
                        raise BadMessage(
                            "unknown_sensor", "no such sensor in that building"
                        ) from None
            except BadMessage as exc:
                for topic in topics:
                    self._reject(topic, exc)
                continue
            except Exception as exc:  # database down, etc.: count it, keep the subscriber alive
                MQTT_MESSAGES.labels(outcome="error").inc(len(topics))
                log.error("mqtt_message_failed", topic=topics[0], error=str(exc))
                continue
            MQTT_MESSAGES.labels(outcome="stored").inc(len(topics))

    def _receive_stamps(self, count: int) -> list[datetime]:
        """Receive times for readings without a time of their own, each at least 1 ms after
        the one before: a reading is keyed by its time, and two sharing one (a burst, a
        batch, a list) would leave only the last. Another process may take the same
        millisecond for the same sensor; storing moves such a reading on (see
        service.ingest_readings)."""
        now_ms = time.time_ns() // 1_000_000
        first = max(now_ms - count + 1, self._last_stamp_ms + 1)
        self._last_stamp_ms = first + count - 1
        return [datetime.fromtimestamp((first + i) / 1000, UTC) for i in range(count)]

    @staticmethod
    def _reject(topic: str, exc: BadMessage) -> None:
        MQTT_MESSAGES.labels(outcome=exc.outcome).inc()
        log.warning("mqtt_message_rejected", topic=topic, reason=exc.outcome, detail=str(exc))

    def _route(self, topic: str) -> tuple[str, str]:
        parts = topic.split("/")
        n = len(self.prefix)
        if parts[:n] != self.prefix or len(parts) != n + 2 or not all(parts[n:]):
            raise BadMessage(
                "invalid_topic", f"expected {'/'.join(self.prefix)}/<building>/<sensor>"
            )
        return parts[n], parts[n + 1]
