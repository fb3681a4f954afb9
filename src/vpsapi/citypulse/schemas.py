"""Wire shapes of the CityPulse API (camelCase)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidatorFunctionWrapHandler, WrapValidator

from vpsapi.core.schemas import CamelModel, NumberNotBool, UtcDatetime

SensorKind = Literal[
    "electricity", "gas", "water", "heat", "temperature", "humidity", "co2", "occupancy"
]
Step = Literal["5m", "1h", "1d"]
Aggregate = Literal["avg", "min", "max", "last"]

# Far beyond any building; bounds keep sums and ratios finite (1e999 parses as infinity).
MAX_FLOOR_AREA_M2 = 10_000_000
FloorArea = NumberNotBool[Annotated[float, Field(gt=0, le=MAX_FLOOR_AREA_M2, allow_inf_nan=False)]]
# Beyond any meter; sums over any number of such readings stay far from float overflow.
MAX_READING_VALUE = 1e12
ReadingValue = NumberNotBool[
    Annotated[float, Field(ge=-MAX_READING_VALUE, le=MAX_READING_VALUE, allow_inf_nan=False)]
]
# A device clock may run a little fast; a reading much further ahead would stay "latest"
# until then and so decide every alert evaluation of its sensor.
FUTURE_TOLERANCE = timedelta(minutes=5)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _plausible_reading_time(moment: datetime) -> datetime:
    if moment < EPOCH:
        raise ValueError("must not be before 1970-01-01T00:00:00Z")
    if moment > datetime.now(UTC) + FUTURE_TOLERANCE:
        raise ValueError("must not be more than 5 minutes in the future")
    return moment


# Between 1970 and now + 5 minutes: readings before 1970 had no sound bucket (negative
# epoch ms), and out-of-range moments broke every query covering them.
ReadingTime = Annotated[UtcDatetime, AfterValidator(_plausible_reading_time)]


class BuildingIn(CamelModel):
    name: str = Field(min_length=1, max_length=200)
    address: str | None = Field(default=None, max_length=500)
    city: str | None = Field(default=None, max_length=120)
    building_type: str | None = Field(default=None, max_length=60)
    floor_area_m2: FloorArea | None = None


class BuildingPatch(CamelModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    address: str | None = Field(default=None, max_length=500)
    city: str | None = Field(default=None, max_length=120)
    building_type: str | None = Field(default=None, max_length=60)
    floor_area_m2: FloorArea | None = None


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


class SensorInBuilding(SensorIn):
    building_id: str = Field(min_length=1, max_length=64)


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
    timestamp: ReadingTime
    value: ReadingValue


class ReadingBatchIn(CamelModel):
    readings: list[ReadingIn] = Field(min_length=1, max_length=10_000)


def _one_or_batch(value: Any, _: ValidatorFunctionWrapHandler) -> ReadingIn | ReadingBatchIn:
    """Validate as the one shape the body means, so errors name its fields (`value`,
    `readings.0.value`), not both union members (`ReadingIn.value`)."""
    if isinstance(value, dict) and "readings" in value:
        return ReadingBatchIn.model_validate(value)
    return ReadingIn.model_validate(value)


# One reading or a batch; the union is kept for the OpenAPI schema.
ReadingsBody = Annotated[ReadingIn | ReadingBatchIn, WrapValidator(_one_or_batch)]


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
    previous_kwh: float | None = Field(description="null: no readings in the previous period")
    change_kwh: float | None
    change_percent: float | None = Field(description="also null when previousKwh is 0")


class EnergyBuilding(CamelModel):
    building_id: str
    name: str
    kwh: float
    peak_kw: float
    cost: float


class EnergyReport(CamelModel):
    building_id: str | None = Field(description="null: every building together")
    from_: datetime = Field(alias="from")
    to: datetime
    step: str
    currency: str
    tariff_per_kwh: float
    buckets: list[EnergyBucket]
    totals: EnergyTotals
    comparison: EnergyComparison
    buildings: list[EnergyBuilding] = Field(
        description="per building with electricity readings in the period, most kWh first"
    )


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


class PortfolioEnergy(CamelModel):
    from_: datetime = Field(alias="from")
    to: datetime
    kwh: float
    covered_hours: int


class AnalyticsReportLink(CamelModel):
    name: str
    path: str
    query: str
    description: str


class AnalyticsOverview(CamelModel):
    """The portfolio at a glance, and where the detailed reports are."""

    buildings: int
    sensors: int
    sensors_by_kind: dict[str, int]
    open_alerts: int
    acknowledged_alerts: int
    energy_last_24_hours: PortfolioEnergy
    energy_last_7_days: PortfolioEnergy
    reports: list[AnalyticsReportLink]


class AlertRuleIn(CamelModel):
    sensor_id: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=200)
    condition: Literal["above", "below"]
    threshold: NumberNotBool[Annotated[float, Field(allow_inf_nan=False)]]
    duration_seconds: NumberNotBool[Annotated[int, Field(ge=0, le=30 * 86_400)]] = 0
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
