"""The one way readings enter CityPulse, whichever transport carried them (HTTP or MQTT):
store, evaluate alert rules, count, and tell real-time clients after the commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.citypulse import alerts, service
from vpsapi.citypulse.metrics import READINGS_INGESTED
from vpsapi.citypulse.models import Alert, Sensor
from vpsapi.citypulse.runtime import CityPulseRuntime, building_room
from vpsapi.citypulse.schemas import AlertOut, ReadingIn

Transport = Literal["http", "mqtt"]
# Event timestamps as REST answers carry them: UTC with `Z`, to the stored millisecond.
_MOMENT = TypeAdapter(datetime)


def _stamp(moment: datetime) -> Any:
    return _MOMENT.dump_python(service.from_ms(service.to_ms(moment)), mode="json")


async def record_readings(
    session: AsyncSession,
    runtime: CityPulseRuntime,
    sensor_id: str,
    readings: list[ReadingIn],
    *,
    transport: Transport,
    received: Sequence[ReadingIn] = (),
) -> int:
    """`received`: readings stamped with their receive time (see service.ingest_readings)."""
    sensor = await service.get_sensor(session, sensor_id)
    accepted = await service.ingest_readings(session, sensor_id, readings, received=received)
    changed = await alerts.evaluate_sensor(session, sensor_id)
    READINGS_INGESTED.labels(transport=transport).inc(accepted)
    runtime.after_commit(session, lambda: runtime.cache.invalidate(sensor.building_id))
    _announce_readings(session, runtime, sensor, [*readings, *received])
    announce_alerts(session, runtime, changed)
    return accepted


def _announce_readings(
    session: AsyncSession, runtime: CityPulseRuntime, sensor: Sensor, readings: list[ReadingIn]
) -> None:
    latest = max(readings, key=lambda reading: reading.timestamp)
    rooms = [building_room(sensor.building_id)]
    payload: dict[str, Any] = {
        "buildingId": sensor.building_id,
        "sensorId": sensor.id,
        "kind": sensor.kind,
        "unit": sensor.unit,
        "count": len(readings),
        "timestamp": _stamp(latest.timestamp),
        "value": latest.value,
    }
    runtime.emit(session, "sensor:reading", payload, rooms)
    if sensor.kind == "electricity":
        runtime.emit(
            session,
            "energy:update",
            {
                "buildingId": sensor.building_id,
                "sensorId": sensor.id,
                "timestamp": payload["timestamp"],
                "powerKw": latest.value,
            },
            rooms,
        )


def announce_alerts(session: AsyncSession, runtime: CityPulseRuntime, changed: list[Alert]) -> None:
    """`alert:opened` / `alert:resolved` to the building's room and every citypulse client."""
    for alert in changed:
        if alert.status not in ("open", "resolved"):
            continue
        event = "alert:opened" if alert.status == "open" else "alert:resolved"
        payload = AlertOut.model_validate(alert).model_dump(mode="json", by_alias=True)
        runtime.emit(
            session, event, payload, [building_room(alert.building_id), "source:citypulse"]
        )
