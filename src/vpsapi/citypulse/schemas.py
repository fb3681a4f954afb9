"""Wire shapes of the CityPulse API (camelCase)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from vpsapi.core.schemas import CamelModel

SensorKind = Literal[
    "electricity", "gas", "water", "heat", "temperature", "humidity", "co2", "occupancy"
]
Step = Literal["5m", "1h", "1d"]
Aggregate = Literal["avg", "min", "max", "last"]


class BuildingIn(CamelModel):
    name: str = Field(min_length=1, max_length=200)
    address: str | None = Field(default=None, max_length=500)
    city: str | None = Field(default=None, max_length=120)
    building_type: str | None = Field(default=None, max_length=60)
    floor_area_m2: float | None = Field(default=None, gt=0)


class BuildingPatch(CamelModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    address: str | None = Field(default=None, max_length=500)
    city: str | None = Field(default=None, max_length=120)
    building_type: str | None = Field(default=None, max_length=60)
    floor_area_m2: float | None = Field(default=None, gt=0)


class BuildingOut(CamelModel):
    id: str
    name: str
    address: str | None
    city: str | None
    building_type: str | None
    floor_area_m2: float | None
    created_at: datetime
    updated_at: datetime


class SensorIn(CamelModel):
    name: str = Field(min_length=1, max_length=200)
    kind: SensorKind
    unit: str = Field(min_length=1, max_length=20)


class SensorPatch(CamelModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    unit: str | None = Field(default=None, min_length=1, max_length=20)


class SensorOut(CamelModel):
    id: str
    building_id: str
    name: str
    kind: str
    unit: str
    created_at: datetime
    updated_at: datetime


class ReadingIn(CamelModel):
    timestamp: datetime
    value: float = Field(allow_inf_nan=False)


class ReadingBatchIn(CamelModel):
    readings: list[ReadingIn] = Field(min_length=1, max_length=10_000)


class IngestResult(CamelModel):
    accepted: int


class ReadingPoint(CamelModel):
    timestamp: datetime
    value: float
    count: int = 1


class ReadingSeries(CamelModel):
    sensor_id: str
    step: str | None
    aggregate: str
    points: list[ReadingPoint]


class EnergyBucket(CamelModel):
    timestamp: datetime
    kwh: float
    peak_kw: float
    cost: float


class EnergyTotals(CamelModel):
    kwh: float
    peak_kw: float
    cost: float


class EnergyComparison(CamelModel):
    previous_from: datetime
    previous_to: datetime
    previous_kwh: float
    change_kwh: float
    change_percent: float | None


class EnergyReport(CamelModel):
    building_id: str
    from_: datetime = Field(alias="from")
    to: datetime
    step: str
    currency: str
    tariff_per_kwh: float
    buckets: list[EnergyBucket]
    totals: EnergyTotals
    comparison: EnergyComparison


# ---- analytics -------------------------------------------------------------------------

AnalyticsStep = Literal["1h", "1d"]
BaselineMethod = Literal["previous-year", "trailing"]


class EnergyIntensity(CamelModel):
    """Energy use intensity: kWh per m² per year, extrapolated from the hours with data."""

    building_id: str
    from_: datetime = Field(alias="from")
    to: datetime
    floor_area_m2: float
    kwh: float
    covered_hours: int
    annualised_kwh: float | None
    eui_kwh_per_m2_year: float | None


class BaselineBucket(CamelModel):
    timestamp: datetime
    actual_kwh: float | None
    baseline_kwh: float | None
    deviation_kwh: float | None
    deviation_percent: float | None


class BaselineTotals(CamelModel):
    actual_kwh: float
    baseline_kwh: float
    deviation_kwh: float
    deviation_percent: float | None


class BaselineReport(CamelModel):
    building_id: str
    from_: datetime = Field(alias="from")
    to: datetime
    step: str
    method: str
    weeks: int | None
    buckets: list[BaselineBucket]
    totals: BaselineTotals


class Anomaly(CamelModel):
    timestamp: datetime
    value: float
    score: float


class AnomalyReport(CamelModel):
    sensor_id: str
    building_id: str
    from_: datetime = Field(alias="from")
    to: datetime
    threshold: float
    readings: int
    median: float | None
    mad: float | None
    scale_method: str | None
    anomaly_count: int
    anomalies: list[Anomaly]


class OccupancyBucket(CamelModel):
    timestamp: datetime
    kwh: float
    person_hours: float
    mean_occupancy: float | None
    kwh_per_person_hour: float | None


class OccupancyTotals(CamelModel):
    kwh: float
    person_hours: float
    kwh_per_person_hour: float | None


class OccupancyReport(CamelModel):
    building_id: str
    from_: datetime = Field(alias="from")
    to: datetime
    step: str
    buckets: list[OccupancyBucket]
    totals: OccupancyTotals


class TopConsumer(CamelModel):
    rank: int
    building_id: str
    name: str
    kwh: float
    covered_hours: int
    floor_area_m2: float | None
    kwh_per_m2: float | None


class TopConsumers(CamelModel):
    from_: datetime = Field(alias="from")
    to: datetime
    by: str
    items: list[TopConsumer]


class AlertRuleIn(CamelModel):
    sensor_id: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=200)
    condition: Literal["above", "below"]
    threshold: float = Field(allow_inf_nan=False)
    duration_seconds: int = Field(default=0, ge=0, le=30 * 86_400)
    severity: Literal["info", "warning", "critical"] = "warning"


class AlertRuleOut(CamelModel):
    id: str
    sensor_id: str
    name: str
    condition: str
    threshold: float
    duration_seconds: int
    severity: str
    created_at: datetime


class AlertOut(CamelModel):
    id: str
    rule_id: str
    sensor_id: str
    building_id: str
    status: Literal["open", "acknowledged", "resolved"]
    severity: str
    message: str
    trigger_value: float
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
