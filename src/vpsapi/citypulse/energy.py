"""Energy aggregation: electricity sensors report power in kW; energy is each sensor's mean
power per hour with readings (per bucket, when shorter than an hour) times those hours,
summed over the sensors of one building, or of every building. Peak kW is the highest
power at one instant over the same sensors."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.citypulse.models import Building, Reading, Sensor
from vpsapi.citypulse.schemas import (
    EnergyBucket,
    EnergyBuilding,
    EnergyComparison,
    EnergyReport,
    EnergyTotals,
)
from vpsapi.citypulse.service import (
    MIN_MS,
    STEP_MS,
    bucket_starts,
    check_buckets,
    from_ms,
    get_building,
    to_ms,
)
from vpsapi.core.db import utcnow
from vpsapi.core.schemas import check_window

HOUR_MS = 3_600_000
DEFAULT_SPAN_MS = 24 * HOUR_MS


def report_window(start: datetime | None, end: datetime | None, width: int) -> tuple[int, int]:
    """`from`/`to` in ms. Unset, `to` is the end of the step bucket in progress (so the
    last bucket is the current one, not cut short) and `from` 24 hours before `to`."""
    end_ms = to_ms(end) if end is not None else (to_ms(utcnow()) // width + 1) * width
    start_ms = to_ms(start) if start is not None else end_ms - DEFAULT_SPAN_MS
    check_window(start_ms, end_ms)
    check_buckets(start_ms, end_ms, width)
    return start_ms, end_ms


def _electricity(building_id: str | None, start_ms: int, end_ms: int) -> list[Any]:
    where: list[Any] = [
        Sensor.kind == "electricity",
        Reading.ts_ms >= start_ms,
        Reading.ts_ms < end_ms,
    ]
    if building_id is not None:
        where.append(Sensor.building_id == building_id)
    return where


async def _energy(
    session: AsyncSession, building_id: str | None, start_ms: int, end_ms: int, width: int
) -> tuple[dict[int, float], dict[str, float]]:
    """kWh per bucket start (ms) and per building: each sensor's mean power per slot of an
    hour (or of the bucket, when shorter) with readings, times the slot's hours. A bucket
    longer than its data (a day with two hours of readings) counts those hours only, so
    hourly and daily totals agree, as they do with the analytics' hourly means."""
    slot_ms = min(width, HOUR_MS)
    slot = ((Reading.ts_ms // slot_ms) * slot_ms).label("slot")
    means = (
        select(slot, Sensor.building_id.label("building_id"), func.avg(Reading.value).label("kw"))
        .join(Sensor, Sensor.id == Reading.sensor_id)
        .where(*_electricity(building_id, start_ms, end_ms))
        .group_by(slot, Reading.sensor_id, Sensor.building_id)
    )
    if slot_ms == width:  # a slot is a bucket: the sensors' means are summed below
        rows = await session.execute(means)
    else:
        per_slot = means.subquery()
        bucket = (per_slot.c.slot // width) * width
        rows = await session.execute(
            select(bucket, per_slot.c.building_id, func.sum(per_slot.c.kw)).group_by(
                bucket, per_slot.c.building_id
            )
        )
    per_bucket: dict[int, float] = defaultdict(float)
    per_building: dict[str, float] = defaultdict(float)
    for start, owner, summed_kw in rows:
        kwh = float(summed_kw) * slot_ms / HOUR_MS
        per_bucket[int(start)] += kwh
        per_building[owner] += kwh
    return per_bucket, per_building


async def _peaks(
    session: AsyncSession, building_id: str | None, start_ms: int, end_ms: int, width: int
) -> tuple[dict[int, float], dict[str, float]]:
    """Highest power at one instant per bucket (summed over the scope) and per building."""
    instant = (
        select(
            Sensor.building_id.label("building_id"),
            Reading.ts_ms.label("ts"),
            func.sum(Reading.value).label("kw"),
        )
        .join(Sensor, Sensor.id == Reading.sensor_id)
        .where(*_electricity(building_id, start_ms, end_ms))
        .group_by(Sensor.building_id, Reading.ts_ms)
        .subquery()
    )
    scope = (
        select(instant.c.ts, func.sum(instant.c.kw).label("kw")).group_by(instant.c.ts).subquery()
    )
    peak_bucket = (scope.c.ts // width) * width
    per_bucket = await session.execute(
        select(peak_bucket, func.max(scope.c.kw)).group_by(peak_bucket)
    )
    per_building = await session.execute(
        select(instant.c.building_id, func.max(instant.c.kw)).group_by(instant.c.building_id)
    )
    return (
        {int(start): float(kw) for start, kw in per_bucket},
        {owner: float(kw) for owner, kw in per_building},
    )


def _comparison(
    previous_start: int, previous_end: int, total_kwh: float, previous: dict[int, float]
) -> EnergyComparison:
    """Against the previous window's kWh per bucket. Without readings there (no bucket,
    as opposed to readings summing to 0 kWh) there is nothing to compare: all null."""
    previous_kwh = change_kwh = change_percent = None
    if previous:
        previous_kwh = sum(previous.values())
        change_kwh = total_kwh - previous_kwh
        if previous_kwh:
            change_percent = round(change_kwh / previous_kwh * 100, 3)
    return EnergyComparison(
        previous_from=from_ms(previous_start),
        previous_to=from_ms(previous_end),
        previous_kwh=None if previous_kwh is None else round(previous_kwh, 6),
        change_kwh=None if change_kwh is None else round(change_kwh, 6),
        change_percent=change_percent,
    )


async def energy_report(
    session: AsyncSession,
    building_id: str | None,
    *,
    start: datetime | None,
    end: datetime | None,
    step: str,
    tariff: float,
    currency: str,
) -> EnergyReport:
    """One building's energy, or (building_id None) every building's together."""
    if building_id is not None:
        await get_building(session, building_id)
    width = STEP_MS[step]
    start_ms, end_ms = report_window(start, end, width)
    current, by_building = await _energy(session, building_id, start_ms, end_ms, width)
    peaks, building_peaks = await _peaks(session, building_id, start_ms, end_ms, width)
    # The same-length period before `from`, cut at the earliest moment a date can hold.
    previous_start = max(start_ms - (end_ms - start_ms), MIN_MS)
    previous, _ = await _energy(session, building_id, previous_start, start_ms, width)
    names = dict(
        (
            await session.execute(
                select(Building.id, Building.name).where(Building.id.in_(list(by_building)))
            )
        )
        .tuples()
        .all()
    )

    # Every bucket of the window, those without readings as zeros: a chart gets no gaps.
    buckets = [
        EnergyBucket(
            timestamp=from_ms(ts),
            kwh=round(current.get(ts, 0.0), 6),
            peak_kw=peaks.get(ts, 0.0),
            cost=round(current.get(ts, 0.0) * tariff, 4),
        )
        for ts in bucket_starts(start_ms, end_ms, width)
    ]
    buildings = [
        EnergyBuilding(
            building_id=owner,
            name=names.get(owner, ""),
            kwh=round(kwh, 6),
            peak_kw=building_peaks.get(owner, 0.0),
            cost=round(kwh * tariff, 4),
        )
        for owner, kwh in sorted(
            by_building.items(), key=lambda item: (-item[1], names.get(item[0], ""), item[0])
        )
    ]
    total_kwh = sum(current.values())
    return EnergyReport(
        building_id=building_id,
        from_=from_ms(start_ms),
        to=from_ms(end_ms),
        step=step,
        currency=currency,
        tariff_per_kwh=tariff,
        buckets=buckets,
        totals=EnergyTotals(
            kwh=round(total_kwh, 6),
            peak_kw=max(peaks.values(), default=0.0),
            cost=round(total_kwh * tariff, 4),
        ),
        comparison=_comparison(previous_start, start_ms, total_kwh, previous),
        buildings=buildings,
    )
