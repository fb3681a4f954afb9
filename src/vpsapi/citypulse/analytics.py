"""CityPulse analytics, aggregated in SQL on both SQLite and PostgreSQL.

Energy always starts from the same hourly figure: the mean power (kW) of each electricity
sensor in each UTC hour, which is that sensor's kWh for the hour; hours without readings
contribute nothing. Occupancy sensors give person-hours the same way (mean people times 1 h).
Results are cached (`AnalyticsCache`) and dropped when the building receives readings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import structlog
from sqlalchemy import Subquery, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.citypulse.cache import ALL_BUILDINGS, AnalyticsCache
from vpsapi.citypulse.models import Alert, Building, Reading, Sensor
from vpsapi.citypulse.schemas import (
    AnalyticsOverview,
    AnalyticsReportLink,
    Anomaly,
    AnomalyReport,
    BaselineBucket,
    BaselineReport,
    BaselineTotals,
    EnergyIntensity,
    OccupancyBucket,
    OccupancyReport,
    OccupancyTotals,
    PortfolioEnergy,
    TopConsumer,
    TopConsumers,
)
from vpsapi.citypulse.service import (
    STEP_MS,
    check_buckets,
    check_range,
    from_ms,
    get_building,
    get_sensor,
    to_ms,
)
from vpsapi.core.db import utcnow
from vpsapi.core.errors import Unprocessable
from vpsapi.core.schemas import CamelModel

log = structlog.get_logger("vpsapi.citypulse.analytics")

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
HOURS_PER_YEAR = 8_760
# 52 weeks: "the same period last year" then starts on the same weekday.
PREVIOUS_YEAR_MS = 364 * DAY_MS
# Robust z-score (Iglewicz & Hoaglin): 0.6745 (x - median) / MAD; when MAD is 0,
# (x - median) / (1.253314 * mean absolute deviation).
MAD_FACTOR = 0.6745
MEAN_AD_FACTOR = 1.253314

Model = TypeVar("Model", bound=CamelModel)


def _window(
    start: datetime, end: datetime, width: int = HOUR_MS, field: str = "step"
) -> tuple[int, int]:
    start_ms, end_ms = check_range(start, end)
    check_buckets(start_ms, end_ms, width, field)
    return start_ms, end_ms


async def _cached(
    cache: AnalyticsCache,
    scope: str,
    name: str,
    params: dict[str, Any],
    model: type[Model],
    compute: Callable[[], Awaitable[Model]],
) -> Model:
    """The cached answer, else computed and stored; a failing cache only costs speed."""
    try:
        hit = await cache.get(scope, name, params)
    except Exception as exc:
        log.warning("analytics_cache_unavailable", error=str(exc))
        hit = None
    if hit is not None:
        return model.model_validate(hit)
    result = await compute()
    try:
        await cache.put(scope, name, params, result.model_dump(mode="json", by_alias=True))
    except Exception as exc:
        log.warning("analytics_cache_unavailable", error=str(exc))
    return result


def _hourly(kind: str, start_ms: int, end_ms: int, building_id: str | None = None) -> Subquery:
    """(building_id, sensor_id, hour, mean) for sensors of `kind`: mean value per sensor-hour."""
    hour = ((Reading.ts_ms // HOUR_MS) * HOUR_MS).label("hour")
    query = (
        select(
            Sensor.building_id.label("building_id"),
            Reading.sensor_id,
            hour,
            func.avg(Reading.value).label("mean"),
        )
        .join(Sensor, Sensor.id == Reading.sensor_id)
        .where(Sensor.kind == kind, Reading.ts_ms >= start_ms, Reading.ts_ms < end_ms)
    )
    if building_id is not None:
        query = query.where(Sensor.building_id == building_id)
    return query.group_by(Sensor.building_id, Reading.sensor_id, hour).subquery()


async def _per_bucket(
    session: AsyncSession, kind: str, building_id: str, start_ms: int, end_ms: int, width: int
) -> dict[int, tuple[float, int]]:
    """bucket start -> (sum of hourly means, hours with data)."""
    hourly = _hourly(kind, start_ms, end_ms, building_id)
    bucket = ((hourly.c.hour // width) * width).label("bucket")
    rows = await session.execute(
        select(bucket, func.sum(hourly.c.mean), func.count(func.distinct(hourly.c.hour))).group_by(
            bucket
        )
    )
    return {int(b): (float(total), int(hours)) for b, total, hours in rows}


def _ratio(part: float | None, whole: float | None) -> float | None:
    return None if part is None or not whole else part / whole


# ---- energy use intensity -------------------------------------------------------------


async def energy_intensity(
    session: AsyncSession, cache: AnalyticsCache, building_id: str, start: datetime, end: datetime
) -> EnergyIntensity:
    building = await get_building(session, building_id)
    area = building.floor_area_m2
    if not area:
        raise Unprocessable("The building has no floorAreaM2: set it to compute its intensity")
    start_ms, end_ms = _window(start, end, field="to")

    async def compute() -> EnergyIntensity:
        hourly = _hourly("electricity", start_ms, end_ms, building_id)
        kwh, hours = (
            await session.execute(
                select(func.sum(hourly.c.mean), func.count(func.distinct(hourly.c.hour)))
            )
        ).one()
        kwh, hours = float(kwh or 0.0), int(hours or 0)
        annual = kwh * HOURS_PER_YEAR / hours if hours else None
        return EnergyIntensity(
            building_id=building_id,
            from_=from_ms(start_ms),
            to=from_ms(end_ms),
            floor_area_m2=area,
            kwh=kwh,
            covered_hours=hours,
            annualised_kwh=annual,
            eui_kwh_per_m2_year=_ratio(annual, area),
        )

    params = {"from": start_ms, "to": end_ms, "area": area}
    return await _cached(cache, building_id, "eui", params, EnergyIntensity, compute)


# ---- baseline vs actual ---------------------------------------------------------------


async def baseline(
    session: AsyncSession,
    cache: AnalyticsCache,
    building_id: str,
    *,
    start: datetime,
    end: datetime,
    step: str,
    method: str,
    weeks: int,
) -> BaselineReport:
    await get_building(session, building_id)
    width = STEP_MS[step]
    start_ms, end_ms = _window(start, end, width)
    shifts = (
        [PREVIOUS_YEAR_MS]
        if method == "previous-year"
        else [k * 7 * DAY_MS for k in range(1, weeks + 1)]
    )

    async def compute() -> BaselineReport:
        actual = {
            b: kwh
            for b, (kwh, _) in (
                await _per_bucket(session, "electricity", building_id, start_ms, end_ms, width)
            ).items()
        }
        earlier: dict[int, list[float]] = {}
        for shift in shifts:
            past = await _per_bucket(
                session, "electricity", building_id, start_ms - shift, end_ms - shift, width
            )
            for b, (kwh, _) in past.items():
                earlier.setdefault(b + shift, []).append(kwh)
        expected = {b: sum(values) / len(values) for b, values in earlier.items()}
        buckets = []
        for b in sorted(set(actual) | set(expected)):
            now, base = actual.get(b), expected.get(b)
            deviation = now - base if now is not None and base is not None else None
            buckets.append(
                BaselineBucket(
                    timestamp=from_ms(b),
                    actual_kwh=now,
                    baseline_kwh=base,
                    deviation_kwh=deviation,
                    deviation_percent=_percent(deviation, base),
                )
            )
        both = [b for b in buckets if b.deviation_kwh is not None]
        total_actual = sum(b.actual_kwh or 0.0 for b in both)
        total_base = sum(b.baseline_kwh or 0.0 for b in both)
        return BaselineReport(
            building_id=building_id,
            from_=from_ms(start_ms),
            to=from_ms(end_ms),
            step=step,
            method=method,
            weeks=weeks if method == "trailing" else None,
            buckets=buckets,
            totals=BaselineTotals(
                actual_kwh=total_actual,
                baseline_kwh=total_base,
                deviation_kwh=total_actual - total_base,
                deviation_percent=_percent(total_actual - total_base, total_base),
            ),
        )

    params = {"from": start_ms, "to": end_ms, "step": step, "method": method, "weeks": weeks}
    return await _cached(cache, building_id, "baseline", params, BaselineReport, compute)


def _percent(deviation: float | None, base: float | None) -> float | None:
    ratio = _ratio(deviation, base)
    return None if ratio is None else ratio * 100


# ---- anomalies ------------------------------------------------------------------------


async def _median(
    session: AsyncSession, expression: Any, where: tuple[Any, ...], count: int
) -> float:
    """Median in SQL on any engine: the middle one or two values of the ordered rows."""
    middle = (
        await session.scalars(
            select(expression)
            .where(*where)
            .order_by(expression)
            .offset((count - 1) // 2)
            .limit(2 - count % 2)
        )
    ).all()
    return sum(float(v) for v in middle) / len(middle)


async def anomalies(
    session: AsyncSession,
    cache: AnalyticsCache,
    sensor_id: str,
    *,
    start: datetime,
    end: datetime,
    threshold: float,
    limit: int,
) -> AnomalyReport:
    sensor = await get_sensor(session, sensor_id)
    start_ms, end_ms = check_range(start, end)
    where = (Reading.sensor_id == sensor_id, Reading.ts_ms >= start_ms, Reading.ts_ms < end_ms)

    async def compute() -> AnomalyReport:
        count = int(
            await session.scalar(select(func.count()).select_from(Reading).where(*where)) or 0
        )
        median = mad = scale = None
        method: str | None = None
        found: list[Anomaly] = []
        total = 0
        if count:
            median = await _median(session, Reading.value, where, count)
            deviation = func.abs(Reading.value - median)
            mad = await _median(session, deviation, where, count)
            if mad > 0:
                scale, method = mad / MAD_FACTOR, "mad"
            else:
                mean_ad = float(
                    await session.scalar(select(func.avg(deviation)).where(*where)) or 0
                )
                if mean_ad > 0:
                    scale, method = MEAN_AD_FACTOR * mean_ad, "meanAbsoluteDeviation"
        if scale is not None and median is not None:
            beyond = (*where, func.abs(Reading.value - median) > threshold * scale)
            total = int(
                await session.scalar(select(func.count()).select_from(Reading).where(*beyond)) or 0
            )
            rows = await session.execute(
                select(Reading.ts_ms, Reading.value)
                .where(*beyond)
                .order_by(Reading.ts_ms)
                .limit(limit)
            )
            found = [
                Anomaly(timestamp=from_ms(ts), value=value, score=(value - median) / scale)
                for ts, value in rows
            ]
        return AnomalyReport(
            sensor_id=sensor_id,
            building_id=sensor.building_id,
            from_=from_ms(start_ms),
            to=from_ms(end_ms),
            threshold=threshold,
            readings=count,
            median=median,
            mad=mad,
            scale_method=method,
            anomaly_count=total,
            anomalies=found,
        )

    params = {
        "sensor": sensor_id,
        "from": start_ms,
        "to": end_ms,
        "threshold": threshold,
        "limit": limit,
    }
    return await _cached(cache, sensor.building_id, "anomalies", params, AnomalyReport, compute)


# ---- occupancy-normalised consumption -------------------------------------------------


async def occupancy_normalised(
    session: AsyncSession,
    cache: AnalyticsCache,
    building_id: str,
    *,
    start: datetime,
    end: datetime,
    step: str,
) -> OccupancyReport:
    await get_building(session, building_id)
    width = STEP_MS[step]
    start_ms, end_ms = _window(start, end, width)

    async def compute() -> OccupancyReport:
        energy = await _per_bucket(session, "electricity", building_id, start_ms, end_ms, width)
        people = await _per_bucket(session, "occupancy", building_id, start_ms, end_ms, width)
        buckets = []
        for b in sorted(set(energy) | set(people)):
            kwh = energy.get(b, (0.0, 0))[0]
            person_hours, hours = people.get(b, (0.0, 0))
            buckets.append(
                OccupancyBucket(
                    timestamp=from_ms(b),
                    kwh=kwh,
                    person_hours=person_hours,
                    mean_occupancy=person_hours / hours if hours else None,
                    kwh_per_person_hour=_ratio(kwh, person_hours),
                )
            )
        kwh_total = sum(b.kwh for b in buckets)
        people_total = sum(b.person_hours for b in buckets)
        return OccupancyReport(
            building_id=building_id,
            from_=from_ms(start_ms),
            to=from_ms(end_ms),
            step=step,
            buckets=buckets,
            totals=OccupancyTotals(
                kwh=kwh_total,
                person_hours=people_total,
                kwh_per_person_hour=_ratio(kwh_total, people_total),
            ),
        )

    params = {"from": start_ms, "to": end_ms, "step": step}
    return await _cached(cache, building_id, "occupancy", params, OccupancyReport, compute)


# ---- top consumers --------------------------------------------------------------------


async def top_consumers(
    session: AsyncSession,
    cache: AnalyticsCache,
    *,
    start: datetime,
    end: datetime,
    by: str,
    limit: int,
) -> TopConsumers:
    start_ms, end_ms = _window(start, end, DAY_MS, field="to")

    async def compute() -> TopConsumers:
        hourly = _hourly("electricity", start_ms, end_ms)
        per_building = (
            select(
                hourly.c.building_id,
                func.sum(hourly.c.mean).label("kwh"),
                func.count(func.distinct(hourly.c.hour)).label("hours"),
            )
            .group_by(hourly.c.building_id)
            .subquery()
        )
        intensity = per_building.c.kwh / Building.floor_area_m2
        order = per_building.c.kwh.desc() if by == "kwh" else intensity.desc().nulls_last()
        rows = await session.execute(
            select(
                Building.id,
                Building.name,
                Building.floor_area_m2,
                per_building.c.kwh,
                per_building.c.hours,
                intensity,
            )
            .join(per_building, per_building.c.building_id == Building.id)
            .order_by(order, Building.id)
            .limit(limit)
        )
        items = [
            TopConsumer(
                rank=rank,
                building_id=building_id,
                name=name,
                kwh=float(kwh),
                covered_hours=int(hours),
                floor_area_m2=area,
                kwh_per_m2=None if per_m2 is None else float(per_m2),
            )
            for rank, (building_id, name, area, kwh, hours, per_m2) in enumerate(rows, 1)
        ]
        return TopConsumers(from_=from_ms(start_ms), to=from_ms(end_ms), by=by, items=items)

    params = {"from": start_ms, "to": end_ms, "by": by, "limit": limit}
    return await _cached(cache, ALL_BUILDINGS, "top", params, TopConsumers, compute)


# ---- overview -------------------------------------------------------------------------


async def _portfolio_energy(
    session: AsyncSession, cache: AnalyticsCache, start_ms: int, end_ms: int
) -> PortfolioEnergy:
    async def compute() -> PortfolioEnergy:
        hourly = _hourly("electricity", start_ms, end_ms)
        kwh, hours = (
            await session.execute(
                select(func.sum(hourly.c.mean), func.count(func.distinct(hourly.c.hour)))
            )
        ).one()
        return PortfolioEnergy(
            from_=from_ms(start_ms),
            to=from_ms(end_ms),
            kwh=float(kwh or 0.0),
            covered_hours=int(hours or 0),
        )

    params = {"from": start_ms, "to": end_ms}
    return await _cached(cache, ALL_BUILDINGS, "portfolio", params, PortfolioEnergy, compute)


async def overview(
    session: AsyncSession, cache: AnalyticsCache, reports: list[AnalyticsReportLink]
) -> AnalyticsOverview:
    """Counts of the portfolio, and its energy in the last 24 hours and 7 days (whole UTC
    hours up to the end of the current one, so the figures stay cacheable for the hour)."""
    buildings = await session.scalar(select(func.count()).select_from(Building))
    by_kind = dict(
        (await session.execute(select(Sensor.kind, func.count()).group_by(Sensor.kind)))
        .tuples()
        .all()
    )
    alerts = dict(
        (
            await session.execute(
                select(Alert.status, func.count())
                .where(Alert.status.in_(("open", "acknowledged")))
                .group_by(Alert.status)
            )
        )
        .tuples()
        .all()
    )
    end_ms = (to_ms(utcnow()) // HOUR_MS + 1) * HOUR_MS
    return AnalyticsOverview(
        buildings=int(buildings or 0),
        sensors=sum(by_kind.values()),
        sensors_by_kind={kind: int(count) for kind, count in sorted(by_kind.items())},
        open_alerts=int(alerts.get("open", 0)),
        acknowledged_alerts=int(alerts.get("acknowledged", 0)),
        energy_last_24_hours=await _portfolio_energy(session, cache, end_ms - DAY_MS, end_ms),
        energy_last_7_days=await _portfolio_energy(session, cache, end_ms - 7 * DAY_MS, end_ms),
        reports=reports,
    )
