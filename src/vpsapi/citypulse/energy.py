"""Energy aggregation: electricity sensors report power in kW; energy per bucket is the
bucket's mean power (averaged in SQL per sensor) times its length in hours, summed over
the building's sensors. Peak kW is the highest building-wide power at one instant."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.citypulse.models import Reading, Sensor
from vpsapi.citypulse.schemas import EnergyBucket, EnergyComparison, EnergyReport, EnergyTotals
from vpsapi.citypulse.service import STEP_MS, from_ms, get_building, to_ms
from vpsapi.core.errors import BadRequest

MAX_BUCKETS = 20_000


async def _bucket_energy(
    session: AsyncSession, building_id: str, start_ms: int, end_ms: int, width: int
) -> dict[int, tuple[float, float]]:
    """bucket start (ms) -> (kWh, peak kW)."""
    sensor_ids = select(Sensor.id).where(
        Sensor.building_id == building_id, Sensor.kind == "electricity"
    )
    in_range = (
        Reading.sensor_id.in_(sensor_ids),
        Reading.ts_ms >= start_ms,
        Reading.ts_ms < end_ms,
    )
    bucket = ((Reading.ts_ms // width) * width).label("bucket")
    hours = width / 3_600_000
    energy: dict[int, float] = defaultdict(float)
    means = await session.execute(
        select(bucket, func.avg(Reading.value)).where(*in_range).group_by(bucket, Reading.sensor_id)
    )
    for start, mean_kw in means:
        energy[int(start)] += float(mean_kw) * hours
    instant = (
        select(Reading.ts_ms.label("ts"), func.sum(Reading.value).label("kw"))
        .where(*in_range)
        .group_by(Reading.ts_ms)
        .subquery()
    )
    peak_bucket = (instant.c.ts // width) * width
    peaks = await session.execute(select(peak_bucket, func.max(instant.c.kw)).group_by(peak_bucket))
    peak = {int(start): float(kw) for start, kw in peaks}
    return {start: (kwh, peak.get(start, 0.0)) for start, kwh in energy.items()}


async def energy_report(
    session: AsyncSession,
    building_id: str,
    *,
    start: datetime,
    end: datetime,
    step: str,
    tariff: float,
    currency: str,
) -> EnergyReport:
    await get_building(session, building_id)
    start_ms, end_ms = to_ms(start), to_ms(end)
    if end_ms <= start_ms:
        raise BadRequest("'to' must be after 'from'")
    width = STEP_MS[step]
    if (end_ms - start_ms) // width > MAX_BUCKETS:
        raise BadRequest(f"Too many buckets: use a coarser step (at most {MAX_BUCKETS})")
    current = await _bucket_energy(session, building_id, start_ms, end_ms, width)
    span = end_ms - start_ms
    previous = await _bucket_energy(session, building_id, start_ms - span, start_ms, width)

    buckets = [
        EnergyBucket(
            timestamp=from_ms(ts), kwh=round(kwh, 6), peak_kw=peak, cost=round(kwh * tariff, 4)
        )
        for ts, (kwh, peak) in sorted(current.items())
    ]
    total_kwh = sum(kwh for kwh, _ in current.values())
    previous_kwh = sum(kwh for kwh, _ in previous.values())
    change = total_kwh - previous_kwh
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
            peak_kw=max((peak for _, peak in current.values()), default=0.0),
            cost=round(total_kwh * tariff, 4),
        ),
        comparison=EnergyComparison(
            previous_from=from_ms(start_ms - span),
            previous_to=from_ms(start_ms),
            previous_kwh=round(previous_kwh, 6),
            change_kwh=round(change, 6),
            change_percent=round(change / previous_kwh * 100, 3) if previous_kwh else None,
        ),
    )
